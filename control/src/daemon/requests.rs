//! The control socket's requests: one function per kind, answered from
//! the store and, for what the workers hold, the attached dataplane.

use super::*;

pub(super) fn not_found(what: &str, net: &Net) -> String {
    nok(&ApiError {
        code: Code::NotFound,
        message: format!("no {what} on {}", net_text(&net.0, net.1)),
    })
}

impl State {
    /// Answers every waiting request.
    pub(super) fn answer_all(
        &mut self,
        commands: &Receiver<Command>,
        mut attached: Option<&mut Attached<'_>>,
    ) {
        while let Ok(cmd) = commands.try_recv() {
            self.answer_one(cmd, attached.as_deref_mut());
        }
    }

    /// Answers one request.
    pub(super) fn answer_one(&mut self, cmd: Command, attached: Option<&mut Attached<'_>>) {
        if let Request::Decoys { address, count } = cmd.request {
            self.ask_dataplane(cmd.reply, address, count, attached);
            return;
        }
        let line = self
            .answer(&cmd.request, attached)
            .unwrap_or_else(|e| api(Code::Unavailable, format!("{e:#}")));
        let _ = cmd.reply.send(line);
    }

    /// Idles for at most `limit`, waking at once for a request (answered
    /// here): control's idle time is a wait on its request channel, never
    /// a sleep a request would have to sit out.
    pub(super) fn idle(
        &mut self,
        commands: &Receiver<Command>,
        limit: Duration,
        attached: Option<&mut Attached<'_>>,
    ) {
        if let Ok(cmd) = commands.recv_timeout(limit) {
            self.answer_one(cmd, attached);
        }
    }

    /// Sends a `decoys` question to worker 0; the answer goes out when the
    /// dataplane's reply arrives (or times out).
    pub(super) fn ask_dataplane(
        &mut self,
        reply: SyncSender<String>,
        address: Option<[u8; 16]>,
        count: u8,
        attached: Option<&mut Attached<'_>>,
    ) {
        let Some(ends) = attached.and_then(|a| a.ends.first_mut()) else {
            let _ = reply.send(api(
                Code::Unavailable,
                "no dataplane is attached: decoys are described by the running dataplane",
            ));
            return;
        };
        let id = self.next_query;
        self.next_query = self.next_query.wrapping_add(1).max(1);
        let rule = Rule::Query {
            id,
            addr: address.unwrap_or([0; 16]),
            count,
        };
        if let Err(e) = ends.send_rule(&rule) {
            let _ = reply.send(api(Code::Unavailable, format!("{e:#}")));
            return;
        }
        self.queries.push(PendingQuery {
            id,
            reply,
            answers: Vec::new(),
            deadline: Instant::now() + QUERY_TIMEOUT,
        });
    }

    /// Collects a dataplane answer; replies once the last one is in.
    pub(super) fn on_answer(&mut self, a: PersonaAnswer) {
        let Some(i) = self.queries.iter().position(|q| q.id == a.id) else {
            return;
        };
        if let Some(q) = self.queries.get_mut(i) {
            if a.found {
                q.answers.push(a);
            }
            if !a.last {
                return;
            }
        }
        let q = self.queries.swap_remove(i);
        let list: Vec<Value> = q.answers.iter().map(decoy_json).collect();
        let _ = q.reply.send(ok(json!(list)));
    }

    /// Answers a request: the dispatcher, one method per kind below.
    pub(super) fn answer(
        &mut self,
        request: &Request,
        attached: Option<&mut Attached<'_>>,
    ) -> anyhow::Result<String> {
        match request {
            Request::Hello | Request::Version => Ok(ok(json!({
                "program": env!("CARGO_PKG_VERSION"),
                "protocol": crate::api::protocol::PROTOCOL_VERSION,
            }))),
            Request::Status => self.status(attached.as_deref()),
            Request::Stats => Ok(ok(self.stats_json(attached.as_deref())?)),
            Request::BlockList {
                covering,
                offset,
                limit,
                local,
                after,
            } => self.block_list(&BlockQuery {
                covering: *covering,
                local: *local,
                after: *after,
                offset: *offset,
                limit: *limit,
            }),
            Request::BlockAdd {
                target,
                duration,
                reason,
            } => self.block_add(attached, target, *duration, reason),
            Request::BlockRemove { target } => self.block_remove(attached, target),
            Request::PeerBlock {
                target,
                origin,
                expires,
                heard_ms,
            } => {
                let heard_ms = heard_ms.unwrap_or(now_ns() / 1_000_000);
                self.learn(attached, target, *origin, *expires, heard_ms)
            }
            Request::PeerWithdraw { target } => self.peer_withdraw(attached, target),
            Request::PeerSweep { before_ms } => self.peer_sweep(attached, *before_ms),
            Request::AllowList => Ok(ok(json!(
                self.store
                    .allows()?
                    .iter()
                    .map(|(n, l)| net_text(n, *l))
                    .collect::<Vec<_>>()
            ))),
            Request::AllowAdd { target, reason } => self.allow_add(attached, target, reason),
            Request::AllowRemove { target } => self.allow_remove(attached, target),
            Request::Hosts { limit } => self.hosts(*limit),
            Request::Events {
                since_ns,
                limit,
                kind,
                source,
            } => Ok(ok(json!(self.store.events(
                *since_ns,
                *limit,
                kind.as_deref(),
                source.as_ref()
            )?))),
            Request::ConfigShow => Ok(ok(json!({
                "file": self.config_path,
                "config": serde_json::to_value(&self.config)?,
            }))),
            Request::ConfigReload => self.reload(attached),
            Request::Shutdown => {
                self.stop.store(true, Ordering::Relaxed);
                Ok(ok(json!("shutting down")))
            }
            // Handled by the socket server and `answer_all`.
            Request::Subscribe { .. } | Request::Decoys { .. } => {
                Ok(api(Code::Unavailable, "not answered here"))
            }
        }
    }

    /// `status`: uptime, the dataplane attached, totals, the last bite.
    fn status(&self, attached: Option<&Attached<'_>>) -> anyhow::Result<String> {
        let (cells, workers) = match attached {
            Some(a) => Self::worker_counters(a.region),
            None => (Vec::new(), Vec::new()),
        };
        let total = counters::worker_json(&cells, &counters::sum(&cells, &workers));
        let last_bite = self.store.last_bite()?.map(|(t, src, kind)| {
            json!({"timestamp": eve::timestamp(t), "src_ip": eve::ip_text(&src), "kind": kind})
        });
        Ok(ok(json!({
            "uptime_seconds": self.started.elapsed().as_secs(),
            "attached": attached.is_some(),
            "instance": attached.map(|a| format!("{:016x}", a.region.instance_id())),
            "workers": attached.map(|a| a.ends.len()),
            "port": attached.map(|a| a.region.port()),
            "generation": total.get("generation"),
            "blocks": self.store.count_blocks()?,
            "allows": self.allowed.len(),
            "last_bite": last_bite,
            "region": self.config.region,
            "config_file": self.config_path,
            "enforcement": self.exports.status(),
        })))
    }

    /// `block-list`: one page, read by index.
    fn block_list(&self, query: &BlockQuery) -> anyhow::Result<String> {
        let list: Vec<_> = self
            .store
            .list_blocks(query, now_s())?
            .into_iter()
            .map(|b| {
                json!({
                    "prefix": net_text(&b.net, b.len),
                    "expires": eve::seconds_text(b.expires),
                    "expires_unix": b.expires,
                    "reason": b.reason,
                    "origin": eve::origin_text(b.origin),
                })
            })
            .collect();
        Ok(ok(json!(list)))
    }

    /// `block-add`: stored, pushed to every worker, logged and exported;
    /// refused over an allow entry.
    fn block_add(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        target: &Net,
        duration: Option<Duration>,
        reason: &str,
    ) -> anyhow::Result<String> {
        // Refused when an allow entry covers the block or lies inside it:
        // no block, and so no export to a firewall or a router, ever
        // covers an allowlisted address.
        if let Some(a) = self.allowed.iter().find(|a| overlap(a, target)) {
            return Ok(api(
                Code::Allowed,
                format!(
                    "{} is covered by or covers the allow entry {}: block around it, or remove the allow entry first",
                    net_text(&target.0, target.1),
                    net_text(&a.0, a.1)
                ),
            ));
        }
        let block = Block::local(
            target.0,
            target.1,
            duration.map_or(0, expires_after),
            reason,
        );
        let change = self.store.upsert_block(&block, now_s())?;
        let stored = self.store.block(&block.net, block.len)?.unwrap_or(block);
        let generation = self.push_rules(attached, &[block_rule(&stored)])?;
        self.store
            .stamp_block(&stored.net, stored.len, generation)?;
        if change != Change::Unchanged {
            self.emit_block(&stored, "manual")?;
        }
        Ok(ok(json!({
            "prefix": net_text(&stored.net, stored.len),
            "expires": eve::seconds_text(stored.expires),
            "generation": generation,
        })))
    }

    /// `block-remove`: gone from the store and from every worker.
    fn block_remove(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        target: &Net,
    ) -> anyhow::Result<String> {
        let Some(old) = self.store.block(&target.0, target.1)? else {
            return Ok(not_found("block", target));
        };
        if !self.store.remove_block(&target.0, target.1)? {
            return Ok(not_found("block", target));
        }
        let rule = Rule::Unblock {
            net: target.0,
            len: target.1,
        };
        let generation = self.push_rules(attached, &[rule])?;
        self.store.stamp_removed(&target.0, target.1, generation)?;
        self.emit_unblock(&target.0, target.1, old.origin, Unblock::Removed)?;
        Ok(ok(
            json!({"removed": net_text(&target.0, target.1), "generation": generation}),
        ))
    }

    /// `peer-withdraw`: another appliance withdrew a block it announced.
    fn peer_withdraw(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        target: &Net,
    ) -> anyhow::Result<String> {
        let Some(origin) = self.store.unlearn_block(&target.0, target.1)? else {
            return Ok(match self.store.block(&target.0, target.1)? {
                Some(_) => {
                    ok(json!({"prefix": net_text(&target.0, target.1), "action": "kept_local"}))
                }
                None => not_found("learned block", target),
            });
        };
        let rule = Rule::Unblock {
            net: target.0,
            len: target.1,
        };
        let generation = self.push_rules(attached, &[rule])?;
        self.store.stamp_removed(&target.0, target.1, generation)?;
        self.emit_unblock(&target.0, target.1, origin, Unblock::Withdrawn)?;
        Ok(ok(
            json!({"prefix": net_text(&target.0, target.1), "action": "removed", "generation": generation}),
        ))
    }

    /// `peer-sweep`: learned blocks not heard of since `before_ms` go.
    fn peer_sweep(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        before_ms: u64,
    ) -> anyhow::Result<String> {
        let stale = self.store.take_stale_learned(before_ms)?;
        let rules: Vec<Rule> = stale.iter().map(unblock_rule).collect();
        let generation = if rules.is_empty() {
            None
        } else {
            Some(self.push_rules(attached, &rules)?)
        };
        for b in &stale {
            if let Some(g) = generation {
                self.store.stamp_removed(&b.net, b.len, g)?;
            }
            self.emit_unblock(&b.net, b.len, b.origin, Unblock::Stale)?;
        }
        Ok(ok(
            json!({"removed": stale.iter().map(|b| net_text(&b.net, b.len)).collect::<Vec<_>>()}),
        ))
    }

    /// `allow-add`: stored and pushed; learned blocks it overlaps go.
    fn allow_add(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        target: &Net,
        reason: &str,
    ) -> anyhow::Result<String> {
        let store = &self.store;
        store.add_allow(&target.0, target.1, reason, now_s())?;
        // Learned blocks it overlaps go (they would be refused now); local
        // ones stay, and the allow entry wins over them.
        let mut unlearned = Vec::new();
        for b in store.overlapping_blocks(target, now_s())? {
            if !b.is_local()
                && overlap(&(b.net, b.len), target)
                && store.unlearn_block(&b.net, b.len)?.is_some()
            {
                unlearned.push(b);
            }
        }
        let mut rules = vec![Rule::Allow {
            net: target.0,
            len: target.1,
            expiry: 0,
        }];
        rules.extend(unlearned.iter().map(unblock_rule));
        let generation = self.push_rules(attached, &rules)?;
        for b in &unlearned {
            self.store.stamp_removed(&b.net, b.len, generation)?;
            self.emit_unblock(&b.net, b.len, b.origin, Unblock::Allowed)?;
        }
        self.refresh_allowed()?;
        Ok(ok(
            json!({"allowed": net_text(&target.0, target.1), "generation": generation}),
        ))
    }

    /// `allow-remove`: gone from the store and from every worker.
    fn allow_remove(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        target: &Net,
    ) -> anyhow::Result<String> {
        if !self.store.remove_allow(&target.0, target.1)? {
            return Ok(not_found("allow entry", target));
        }
        let rule = Rule::Disallow {
            net: target.0,
            len: target.1,
        };
        let generation = self.push_rules(attached, &[rule])?;
        self.store
            .stamp_allow_removed(&target.0, target.1, generation)?;
        self.refresh_allowed()?;
        Ok(ok(
            json!({"removed": net_text(&target.0, target.1), "generation": generation}),
        ))
    }

    /// `hosts`: live hosts and services the workers learned.
    fn hosts(&self, limit: u64) -> anyhow::Result<String> {
        Ok(ok(json!(
            self.store
                .hosts(u32::try_from(limit).unwrap_or(u32::MAX))?
                .iter()
                .map(|(a, p, first, last)| json!({
                    "host": eve::ip_text(a),
                    "port": p,
                    "first_seen": eve::timestamp(*first),
                    "last_seen": eve::timestamp(*last),
                }))
                .collect::<Vec<_>>()
        )))
    }

    /// A block another appliance announced: refused when it echoes our own,
    /// when the allowlist covers it, or when the store is full; a local
    /// block on the same prefix is left as it is.
    pub(super) fn learn(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        target: &Net,
        origin: u32,
        expires: u32,
        heard_ms: u64,
    ) -> anyhow::Result<String> {
        let prefix = net_text(&target.0, target.1);
        let Some(bgp) = &self.config.bgp else {
            return Ok(api(
                Code::NotConfigured,
                "this control has no [bgp] section: it learns no blocks",
            ));
        };
        if !bgp.learn {
            return Ok(api(Code::NotConfigured, "[bgp] learn is off"));
        }
        if origin == bgp.appliance_id {
            return Ok(api(
                Code::OwnOrigin,
                format!(
                    "{prefix} is this appliance's own block (origin {origin}): an echo changes nothing"
                ),
            ));
        }
        // Refused when an allow entry covers the block, or lies inside it.
        if let Some(a) = self.allowed.iter().find(|a| overlap(a, target)) {
            return Ok(api(
                Code::Allowed,
                format!(
                    "{prefix} is covered by or covers the allow entry {}",
                    net_text(&a.0, a.1)
                ),
            ));
        }
        if expires != 0 && expires <= now_s() {
            return Ok(api(Code::OutOfRange, format!("{prefix} expired already")));
        }
        let block = Block {
            origin,
            ..Block::local(target.0, target.1, expires, "peer")
        };
        if self.store.block(&block.net, block.len)?.is_none()
            && self.store.count_blocks()? >= self.config.policy.max_blocks
        {
            self.refused += 1;
            return Ok(api(
                Code::Full,
                format!("{prefix}: the store holds policy.max_blocks blocks already"),
            ));
        }
        let action = match self.store.learn_block(&block, heard_ms)? {
            Learned::KeptLocal => "kept_local",
            Learned::Unchanged => "unchanged",
            change => {
                let stored = self.store.block(&block.net, block.len)?.unwrap_or(block);
                let generation = self.push_rules(attached, &[block_rule(&stored)])?;
                self.store
                    .stamp_block(&stored.net, stored.len, generation)?;
                let new = change == Learned::New;
                self.emit_block(&stored, if new { "learned" } else { "relearned" })?;
                if new { "added" } else { "updated" }
            }
        };
        Ok(ok(
            json!({"prefix": prefix, "action": action, "origin": origin}),
        ))
    }

    /// Re-reads the configuration file: on any error nothing changes; else
    /// the policy, allowlist and event log settings apply now, and fields
    /// that need a restart are named (and left as they are).
    pub(super) fn reload(&mut self, attached: Option<&mut Attached<'_>>) -> anyhow::Result<String> {
        let Some(path) = self.config_path.clone() else {
            return Ok(api(
                Code::NotConfigured,
                "control was started without --config: there is no file to reload",
            ));
        };
        let new = match ControlConfig::load(&path) {
            Ok(c) => c,
            Err(e) => return Ok(api(Code::InvalidConfig, format!("{e:#}; nothing changed"))),
        };
        // Open a new log before anything changes, so a bad path changes nothing.
        let new_log = match (
            &new.eve.path,
            self.eve.as_ref().map(|l| l.path().to_owned()),
        ) {
            (Some(p), Some(old)) if *p == old => None,
            (Some(p), _) => match EveLog::open(p, new.eve.rotate_bytes, new.eve.keep) {
                Ok(log) => Some(Some(log)),
                Err(e) => {
                    return Ok(api(
                        Code::InvalidConfig,
                        format!("eve.path {}: {e}; nothing changed", p.display()),
                    ));
                }
            },
            (None, Some(_)) => Some(None),
            (None, None) => None,
        };
        let restart = self.config.restart_fields(&new);
        let mut applied = Vec::new();
        if new.policy != self.config.policy {
            applied.push("policy");
        }
        if new.eve != self.config.eve {
            applied.push("eve");
        }
        let old = std::mem::replace(&mut self.config, new);
        // What needs a restart stays as it is, so config-show says what is in force.
        self.config.region = old.region;
        self.config.database = old.database;
        self.config.socket = old.socket;
        self.config.metrics = old.metrics;
        if let Some(log) = new_log {
            self.eve = log;
        }
        if let Some(log) = self.eve.as_mut() {
            log.set_rotation(self.config.eve.rotate_bytes, self.config.eve.keep);
        }
        self.sync_policy_allows(attached)?;
        Ok(ok(json!({"applied": applied, "restart_required": restart})))
    }
}

/// A dataplane answer as the `decoys` reply shows it.
pub(super) fn decoy_json(a: &PersonaAnswer) -> Value {
    let mac = a.mac.map(|b| format!("{b:02x}")).join(":");
    json!({
        "address": eve::ip_text(&a.addr),
        "state": code::darkness_name(a.darkness),
        "persona": code::persona_name(a.family),
        "mac": mac,
        "ttl": a.ttl,
        "window": a.window,
        "mss": a.mss,
        "dont_fragment": a.dont_frag,
        "open_ports": a.open_ports().collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn net(s: &str) -> Net {
        crate::policy::parse_net(s).unwrap()
    }

    fn answer(state: &mut State, request: Request) -> Value {
        serde_json::from_str(&state.answer(&request, None).unwrap()).unwrap()
    }

    #[test]
    fn blocks_are_added_listed_and_removed_and_the_allowlist_is_never_covered() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(
            dir.path(),
            crate::policy::Policy::parse("allow = [\"192.0.2.200\"]\n", "t").unwrap(),
        );
        let add = |t: &str| Request::BlockAdd {
            target: net(t),
            duration: Some(Duration::from_secs(60)),
            reason: "manual".into(),
        };
        assert_eq!(answer(&mut state, add("192.0.2.7"))["return"], "OK");
        assert_eq!(answer(&mut state, add("198.51.100.0/24"))["return"], "OK");
        // Over the allow entry: refused with its stable code.
        let refused = answer(&mut state, add("192.0.2.0/24"));
        assert_eq!(refused["error"]["code"], "allowed", "{refused}");
        let list = |state: &State, covering: Option<&str>, after: Option<&str>| {
            let q = BlockQuery {
                covering: covering.map(|c| net(c).0),
                after: after.map(net),
                limit: 100,
                ..BlockQuery::default()
            };
            let v: Value = serde_json::from_str(&state.block_list(&q).unwrap()).unwrap();
            v["message"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["prefix"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            list(&state, None, None),
            ["192.0.2.7/32", "198.51.100.0/24"]
        );
        assert_eq!(
            list(&state, Some("198.51.100.9"), None),
            ["198.51.100.0/24"]
        );
        assert_eq!(list(&state, None, Some("192.0.2.7")), ["198.51.100.0/24"]);
        let removed = answer(
            &mut state,
            Request::BlockRemove {
                target: net("192.0.2.7"),
            },
        );
        assert_eq!(removed["return"], "OK");
        let again = answer(
            &mut state,
            Request::BlockRemove {
                target: net("192.0.2.7"),
            },
        );
        assert_eq!(again["error"]["code"], "not_found", "{again}");
        assert_eq!(list(&state, None, None), ["198.51.100.0/24"]);
    }
}
