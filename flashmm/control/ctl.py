"""`flashmm ctl`: a running daemon's controls from a shell or a script, over its control socket.

    flashmm ctl [--socket S] [--why TEXT] status [--json] | pause | resume | widen | tighten | flatten | kill
                | stop | set KEY=VALUE... [--save PATH] | save PATH | params | health

Exit codes: 0 done (health: healthy); 1 refused, failed or unhealthy (the reason is printed); 2 no daemon
answers on the socket, or a usage error. Every command is written to the daemon's audit log as
"flashmm ctl (pid P, uid U)" with --why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from flashmm.control.client import ControlClient, ControlError

SIMPLE = {
    "pause": "cancel all orders and stop quoting (keeps running)",
    "resume": "quote again (acknowledges drawdown and position-mismatch breakers)",
    "widen": "widen the spread one step",
    "tighten": "tighten the spread one step",
    "flatten": "cancel all and close the position within the slippage cap, then pause",
    "kill": "cancel all, flatten, disable trading until restart (the daemon keeps running)",
    "stop": "stop the daemon: cancel every order, confirm, write the summary, exit",
}


def add_cli(sub: Any) -> None:
    c = sub.add_parser("ctl", help="control a running daemon over its control socket",
                       description="Control a running FlashMM daemon over its local control socket.")
    c.add_argument("--socket", help="control socket (default: $FLASHMM_CONTROL__SOCKET, else [control].socket)")
    c.add_argument("--config", help="config.toml whose [control].socket to use")
    c.add_argument("--why", default="", help="the reason, written to the audit log")
    c.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon (default 5)")
    cs = c.add_subparsers(dest="ctl_command", required=True)
    st = cs.add_parser("status", help="mode, position, PnL, orders, spreads, latency, breakers, changed parameters")
    st.add_argument("--json", action="store_true", help="the figures as one JSON object")
    for name, text in SIMPLE.items():
        cs.add_parser(name, help=text)
    s = cs.add_parser("set", help="change parameters while trading (validated like config.toml, applied at the "
                                  "next quote cycle, audited)")
    s.add_argument("assignments", metavar="KEY=VALUE", nargs="+", help="e.g. strategy.risk_aversion=0.05")
    s.add_argument("--save", metavar="PATH", help="then save the running parameters as a config file")
    sv = cs.add_parser("save", help="save the running parameters as a config file (load it with --config)")
    sv.add_argument("path")
    cs.add_parser("params", help="the parameters that can be changed while trading, their values and ranges")
    cs.add_parser("health", help="exit 0 when healthy, 1 otherwise (the docker-compose healthcheck)")


def socket_path(args: argparse.Namespace) -> str:
    if args.socket:
        return args.socket
    from flashmm.config import ConfigError, load_config

    try:
        cfg = load_config(args.config or os.environ.get("FLASHMM_CONFIG") or None)
    except ConfigError as exc:
        raise ControlError(str(exc)) from None
    return cfg.control.socket


def _status_text(d: dict[str, Any], hello: dict[str, Any]) -> str:
    q, b = d.get("quote", ""), d.get("base", "")
    up = int(d.get("uptime_s") or 0)
    lines = [f"FlashMM {d['venue']} {d['symbol']}  {d['mode']}"
             + (f" x{d['widen']:g}" if d.get("widen", 1) != 1 else "")
             + (f"  STOPPING ({d['stopping']})" if d.get("stopping") else "")
             + f"  up {up // 3600:02d}:{up % 3600 // 60:02d}:{up % 60:02d}  (daemon pid {hello.get('pid')})"]
    rows = [
        ("position", f"{d['position_base']} {b} ({d['position_quote']:+,.2f} {q})"),
        ("PnL", f"{d['pnl']:+,.4f} {q} (realised {d['realised']:+,.4f}, unrealised {d['unrealised']:+,.4f})"),
        ("orders", f"{d['open_orders']} open, {d['orders_placed']:,} placed, {d['fills']:,} fills"),
        ("spread", "not quoting both sides" if d.get("our_spread_bps") is None else
         f"ours {d['our_spread_bps']:.2f} bps, market {d['market_spread_bps']:.2f} bps"),
        ("tick-to-quote", f"p50 {d['t2q_p50_us']:,.0f} us, p99 {d['t2q_p99_us']:,.0f} us"),
        ("breakers", ", ".join(f"{k} {v['state']} ({v['reason']})" for k, v in d["breakers"].items()) or "all ok"),
        ("changed", ", ".join(f"{k} = {v}" for k, v in d["modified"].items()) or "nothing since start"),
        ("market data", f"{d['last_data_age_s']:.1f} s ago; {d['clients']} connection(s) on the socket"),
    ]
    if d.get("fault"):
        rows.append(("fault", d["fault"]))
    return "\n".join(lines + [f"  {k:<14} {v}" for k, v in rows])


async def _run(args: argparse.Namespace) -> int:
    path = socket_path(args)
    client = ControlClient(path, role="flashmm ctl")
    hello = await client.connect(args.timeout)
    try:
        cmd = args.ctl_command
        if cmd == "status":
            r = await client.request("status", timeout=args.timeout)
            if args.json:
                print(orjson.dumps(r.get("data"), option=orjson.OPT_INDENT_2).decode())
            else:
                print(_status_text(r["data"], hello))
            return 0
        if cmd == "health":
            r = await client.request("health", timeout=args.timeout)
            healthy = bool((r.get("data") or {}).get("healthy"))
            print(f"{'healthy' if healthy else 'UNHEALTHY'}: {r.get('result')}")
            return 0 if healthy else 1
        if cmd == "params":
            r = await client.request("params", timeout=args.timeout)
            for p in r.get("data") or []:
                mark = "*" if p["value"] != p["start"] else " "
                print(f"{mark} {p['key']:<36} {p['value']!s:>10} {p['unit']:<5} {p['bounds']:<18} {p['label']}")
            print("(* changed since start; flashmm ctl set KEY=VALUE)")
            return 0
        if cmd == "set":
            rc = 0
            for text in args.assignments:
                key, sep, raw = text.partition("=")
                if not sep or not key.strip():
                    print(f"flashmm ctl: expected KEY=VALUE, got {text!r}", file=sys.stderr)
                    return 2
                r = await client.request("set", {"key": key.strip(), "value": raw.strip()}, args.why, args.timeout)
                print(r.get("result"))
                rc = rc or (0 if r.get("ok") else 1)
            if args.save and rc == 0:
                r = await client.request("save", {"path": str(Path(args.save).expanduser().resolve())}, args.why,
                                         args.timeout)
                print(r.get("result"))
                rc = 0 if r.get("ok") else 1
            return rc
        if cmd == "save":
            r = await client.request("save", {"path": str(Path(args.path).expanduser().resolve())}, args.why,
                                     args.timeout)
        else:
            r = await client.request(cmd, None, args.why, args.timeout)
        print(r.get("result"))
        return 0 if r.get("ok") else 1
    finally:
        await client.close()


def run_cli(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except ControlError as exc:
        print(f"flashmm ctl: {exc}", file=sys.stderr)
        return 2
