/*
 * baitwall's DPDK shim: the few DPDK calls the dataplane makes, as plain
 * functions with plain arguments. DPDK's burst and mbuf calls are static
 * inline (they do not exist in the shared libraries), and its structures
 * change between releases; the Rust side binds only to these functions,
 * so no DPDK structure layout crosses the FFI boundary.
 */
#include <errno.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

int bw_eal_init(int argc, char **argv)
{
    int rc = rte_eal_init(argc, argv);
    return rc < 0 ? -rte_errno : rc;
}

int bw_eal_cleanup(void) { return rte_eal_cleanup(); }

const char *bw_strerror(int err) { return rte_strerror(err); }

int bw_thread_register(void) { return rte_thread_register() < 0 ? -rte_errno : 0; }

void bw_thread_unregister(void) { rte_thread_unregister(); }

struct rte_mempool *bw_pool_create(const char *name, unsigned int n, unsigned int cache)
{
    return rte_pktmbuf_pool_create(name, n, cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   (int)rte_socket_id());
}

void bw_pool_free(struct rte_mempool *pool) { rte_mempool_free(pool); }

int bw_port_by_name(const char *name, uint16_t *port)
{
    return rte_eth_dev_get_port_by_name(name, port);
}

uint16_t bw_port_count(void) { return rte_eth_dev_count_avail(); }

/*
 * Configures `port` with `queues` RX and TX queues, RSS over IPv4/IPv6 and
 * TCP/UDP with `key` (the dataplane's symmetric Toeplitz key) when the
 * device offers RSS and there is more than one queue, then starts it in
 * promiscuous mode. Returns 0, or a negative errno.
 */
int bw_port_setup(uint16_t port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
                  struct rte_mempool *pool, const uint8_t *key, uint8_t key_len)
{
    struct rte_eth_dev_info info;
    struct rte_eth_conf conf;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0)
        return rc;
    memset(&conf, 0, sizeof(conf));
    uint64_t hf = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
    hf &= info.flow_type_rss_offloads;
    /* The key must be the device's length (40 bytes on many NICs, 52 on
     * others): our symmetric key is a repeated 16-bit pattern, so it is
     * repeated to whatever length the device takes. */
    uint8_t sized[256];
    if (queues > 1 && hf != 0 && key_len >= 2) {
        uint8_t want = info.hash_key_size ? info.hash_key_size : key_len;
        for (unsigned i = 0; i < want; i++)
            sized[i] = key[i % 2];
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = sized;
        conf.rx_adv_conf.rss_conf.rss_key_len = want;
        conf.rx_adv_conf.rss_conf.rss_hf = hf;
    }
    if (queues > info.max_rx_queues || queues > info.max_tx_queues)
        return -EINVAL;
    rc = rte_eth_dev_configure(port, queues, queues, &conf);
    if (rc != 0)
        return rc;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
    if (rc != 0)
        return rc;
    int socket = rte_eth_dev_socket_id(port);
    for (uint16_t q = 0; q < queues; q++) {
        rc = rte_eth_rx_queue_setup(port, q, rx_desc, socket, NULL, pool);
        if (rc != 0)
            return rc;
        rc = rte_eth_tx_queue_setup(port, q, tx_desc, socket, NULL);
        if (rc != 0)
            return rc;
    }
    rc = rte_eth_dev_start(port);
    if (rc != 0)
        return rc;
    /* Some virtual devices have no promiscuous mode: not an error. */
    rte_eth_promiscuous_enable(port);
    return 0;
}

int bw_port_stop(uint16_t port)
{
    int rc = rte_eth_dev_stop(port);
    if (rc == 0)
        rc = rte_eth_dev_close(port);
    return rc;
}

/* ipackets, opackets, imissed, ierrors, oerrors, rx_nombuf */
int bw_port_stats(uint16_t port, uint64_t out[6])
{
    struct rte_eth_stats s;
    int rc = rte_eth_stats_get(port, &s);
    if (rc != 0)
        return rc;
    out[0] = s.ipackets;
    out[1] = s.opackets;
    out[2] = s.imissed;
    out[3] = s.ierrors;
    out[4] = s.oerrors;
    out[5] = s.rx_nombuf;
    return 0;
}

uint16_t bw_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t bw_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *bw_mbuf_alloc(struct rte_mempool *pool) { return rte_pktmbuf_alloc(pool); }

void bw_mbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

/* The first segment's data, its length, and how long it may grow. */
uint8_t *bw_mbuf_data(struct rte_mbuf *m, uint16_t *len, uint16_t *room)
{
    *len = rte_pktmbuf_data_len(m);
    *room = (uint16_t)(rte_pktmbuf_data_len(m) + rte_pktmbuf_tailroom(m));
    return rte_pktmbuf_mtod(m, uint8_t *);
}

/* The same for a whole burst: one call into the shim per burst, not per
 * mbuf. */
void bw_mbufs_data(struct rte_mbuf **m, uint16_t n, uint8_t **data, uint16_t *len,
                   uint16_t *room)
{
    for (uint16_t i = 0; i < n; i++)
        data[i] = bw_mbuf_data(m[i], &len[i], &room[i]);
}

/* Sets a one-segment frame's length; -1 past the buffer (nothing changes)
 * or for a chained mbuf. */
int bw_mbuf_set_len(struct rte_mbuf *m, uint16_t len)
{
    if (m->nb_segs != 1 || len > rte_pktmbuf_data_len(m) + rte_pktmbuf_tailroom(m))
        return -1;
    m->data_len = len;
    m->pkt_len = len;
    return 0;
}

uint16_t bw_mbuf_segments(struct rte_mbuf *m) { return m->nb_segs; }
