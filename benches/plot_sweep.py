#!/usr/bin/env python3
"""Plots `cargo bench --bench pipeline -- --sweep`'s CSV as an SVG.

Two panels, ns/packet against the flow table's size and against the
blocklist's size (log scale), with B2c from the same run as a dashed line.
Standard library only.

    python3 benches/plot_sweep.py [target/pipeline-sweep.csv] [docs/img/pipeline-sweep.svg]
"""

import csv
import math
import sys

W, H = 760, 320
PANEL_W, PANEL_H = 300, 220
LEFT, TOP = 70, 50


def panel(x0, title, xlabel, points, b2c, y_max):
    out = []
    px = lambda v: x0 + (math.log10(max(v, 1)) - lo) / (hi - lo) * PANEL_W
    py = lambda ns: TOP + PANEL_H - ns / y_max * PANEL_H
    sizes = [s for s, _ in points]
    lo = math.log10(max(min(sizes), 1))
    hi = math.log10(max(sizes))
    if hi == lo:
        hi = lo + 1
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{TOP - 18}" text-anchor="middle" font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#888"/>')
    step = 20 if y_max <= 140 else 50
    for ns in range(0, int(y_max) + 1, step):
        y = py(ns)
        out.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + PANEL_W}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end" font-size="11">{ns}</text>')
    for s in sizes:
        x = px(s)
        label = f"{s / 1e6:g}M" if s >= 1e6 else (f"{s / 1e3:g}k" if s >= 1e3 else str(s))
        out.append(f'<text x="{x}" y="{TOP + PANEL_H + 16}" text-anchor="middle" font-size="11">{label}</text>')
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{TOP + PANEL_H + 34}" text-anchor="middle" font-size="12">{xlabel}</text>')
    y = py(b2c)
    out.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + PANEL_W}" y2="{y}" stroke="#c33" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{x0 + PANEL_W - 4}" y="{y - 5}" text-anchor="end" font-size="11" fill="#c33">B2c {b2c:.0f} ns</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{px(s):.1f},{py(ns):.1f}" for i, (s, ns) in enumerate(points))
    out.append(f'<path d="{path}" fill="none" stroke="#2a6" stroke-width="2"/>')
    for s, ns in points:
        out.append(f'<circle cx="{px(s):.1f}" cy="{py(ns):.1f}" r="3.5" fill="#2a6"/>')
        out.append(f'<text x="{px(s):.1f}" y="{py(ns) - 8:.1f}" text-anchor="middle" font-size="10">{ns:.0f}</text>')
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "target/pipeline-sweep.csv"
    dst = sys.argv[2] if len(sys.argv) > 2 else "docs/img/pipeline-sweep.svg"
    flows, blocks, b2c = [], [], 0.0
    with open(src) as f:
        for row in csv.DictReader(f):
            point = (int(row["size"]), float(row["ns_per_packet"]))
            b2c = float(row["b2c_ns"])
            (flows if row["axis"] == "flows" else blocks).append(point)
    # The blocklist panel starts at 0 entries: plot it at 1 on the log axis.
    blocks = [(max(s, 1), ns) for s, ns in blocks]
    y_max = max([ns for _, ns in flows + blocks] + [b2c]) * 1.25
    y_max = math.ceil(y_max / 20) * 20
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="14" y="{TOP + PANEL_H / 2}" transform="rotate(-90 14 {TOP + PANEL_H / 2})" text-anchor="middle" font-size="12">ns/packet (forwarding, one core)</text>',
    ]
    svg += panel(LEFT, "flow table size (empty blocklist)", "active flows", flows, b2c, y_max)
    svg += panel(LEFT + PANEL_W + 70, "blocklist size (65,536 flows)", "exact blocks (+10% prefixes; 1 = none)", blocks, b2c, y_max)
    svg.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(svg) + "\n")
    print(f"written: {dst}")


if __name__ == "__main__":
    main()
