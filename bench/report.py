"""Printing the serving benchmark: the machine, a side-by-side table, and each ratio against its target."""

from __future__ import annotations

from typing import Any


def machine_lines(m: dict[str, Any]) -> str:
    load = ", ".join(f"{v:.2f}" for v in m["load_average_start"])
    return (f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']:.0f} GB, {m['platform']}\n"
            f"python {m['python']}, torch {m['torch']}, transformers {m['transformers']}; {m['date']}; "
            f"load average at start {load}")


def _get(results: dict[str, Any], server: str, *path: str) -> float | None:
    node: Any = results.get(server)
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of docs/performance.md: its measured value (None when not measured) and pass/fail."""
    mw_ttft = _get(results, "meterway", "single", "ttft_s")
    cold = _get(results, "meterway", "cold", "ttft_s")
    rows = [
        ("aggregate tok/s, burst of N, meterway ÷ peer", ">=", 1.5,
         _ratio(_get(results, "meterway", "concurrent", "aggregate_tok_s"),
                _get(results, "peer", "concurrent", "aggregate_tok_s"))),
        ("aggregate tok/s, N kept busy, meterway ÷ peer", ">=", 1.5,
         _ratio(_get(results, "meterway", "sustained", "aggregate_tok_s"),
                _get(results, "peer", "sustained", "aggregate_tok_s"))),
        ("single-stream tok/s, meterway ÷ peer", ">=", 1.0,
         _ratio(_get(results, "meterway", "single", "e2e_tok_s"),
                _get(results, "peer", "single", "e2e_tok_s"))),
        ("TTFT p50, N streams kept busy ÷ unloaded (meterway)", "<=", 2.0,
         _ratio(_get(results, "meterway", "sustained", "ttft_p50_s"), mw_ttft)),
        ("TTFT p50, burst of N ÷ unloaded (meterway)", "<=", 2.0,
         _ratio(_get(results, "meterway", "concurrent", "ttft_p50_s"), mw_ttft)),
        ("cold start to first token, s (meterway)", "<=", 3.0, cold),
        ("cold start ÷ warm TTFT (meterway)", "<=", 15.0, _ratio(cold, mw_ttft)),
        ("single-stream decode ÷ bandwidth bound (meterway)", ">=", 0.30,
         _ratio(_get(results, "meterway", "single", "decode_tok_s"), results["bound"]["bound_tok_s"])),
    ]
    return [{"target": name, "value": value, "op": op, "limit": limit,
             "ok": None if value is None else (value >= limit if op == ">=" else value <= limit)}
            for name, op, limit, value in rows]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:.3f}{unit}" if abs(value) < 10 else f"{value:.1f}{unit}"


def _tokens(results: dict[str, Any], server: str, kind: str) -> str:
    node = results.get(server, {}).get(kind, {})
    counts = node.get("completion_tokens") or []
    return "—" if not counts else f"{min(counts)}-{max(counts)}"


def table(results: dict[str, Any]) -> str:
    """The side-by-side figures, then the verdicts."""
    n = results["plan"]["streams"]
    rows = [
        ("single stream: tok/s (whole request)", "single", "e2e_tok_s", " tok/s"),
        ("single stream: decode tok/s (after 1st token)", "single", "decode_tok_s", " tok/s"),
        ("single stream: TTFT", "single", "ttft_s", " s"),
        (f"{n} streams: aggregate tok/s (burst)", "concurrent", "aggregate_tok_s", " tok/s"),
        (f"{n} streams kept busy: aggregate tok/s", "sustained", "aggregate_tok_s", " tok/s"),
        (f"{n} streams: TTFT p50 (burst: all sent at once)", "concurrent", "ttft_p50_s", " s"),
        (f"{n} streams kept busy: TTFT p50", "sustained", "ttft_p50_s", " s"),
        (f"{n} streams kept busy: TTFT p90", "sustained", "ttft_p90_s", " s"),
    ]
    lines = ["", f"{'figure':50} {'meterway':>14} {'peer':>14} {'meterway/peer':>14}"]
    for label, kind, key, unit in rows:
        mw, peer = _get(results, "meterway", kind, key), _get(results, "peer", kind, key)
        lines.append(f"{label:50} {_fmt(mw, unit):>14} {_fmt(peer, unit):>14} {_fmt(_ratio(mw, peer)):>14}")
    for label, kind in (("completion tokens per single run", "single"),
                        ("completion tokens per round", "concurrent")):
        mw_tokens, peer_tokens = _tokens(results, "meterway", kind), _tokens(results, "peer", kind)
        lines.append(f"{label:50} {mw_tokens:>14} {peer_tokens:>14}")
    bound = results["bound"]
    cold = _fmt(_get(results, "meterway", "cold", "ttft_s"), " s")
    lines += [f"{'meterway cold start to first token':50} {cold:>14}",
              f"{'read bandwidth':50} {bound['bandwidth_bytes_s'] / 1e9:>11.1f} GB/s",
              f"{'weights read per token':50} {bound['weights_bytes'] / 1e6:>13.0f} MB",
              f"{'bandwidth bound at batch 1':50} {bound['bound_tok_s']:>8.1f} tok/s", "",
              f"{'target':55} {'measured':>10} {'goal':>8}  verdict"]
    for v in results["verdicts"]:
        verdict = "not measured" if v["ok"] is None else ("PASS" if v["ok"] else "FAIL")
        lines.append(f"{v['target']:55} {_fmt(v['value']):>10} {v['op']}{v['limit']:>6}  {verdict}")
    if "peer_error" in results:
        lines.append(f"\npeer not measured: {results['peer_error'][:500]}")
    return "\n".join(lines)
