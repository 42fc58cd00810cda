"""What the JSON body check (service/http/json_body.py: repeated keys, depth) costs per request.

    python -m bench.json_check_bench

Times ``check_json`` on three request bodies against msgspec's own decode of the same bytes, which every
route does anyway, so the check's cost on the request path can be read against it.
"""

from __future__ import annotations

import json
import timeit

import msgspec

from service.http.json_body import check_json

BODIES = {
    "chat, 2 messages": {"model": "smollm2-135m-instruct", "max_tokens": 20, "temperature": 0,
                         "messages": [{"role": "system", "content": "You are helpful."},
                                      {"role": "user", "content": "What is the capital of France?"}]},
    "chat, 20 messages + 10 tools": {
        "model": "m", "messages": [{"role": "user", "content": "hi"}] * 20,
        "tools": [{"type": "function", "function": {"name": f"f{i}", "parameters": {
            "type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}}}
                  for i in range(10)]},
    "chat, 100 KB prompt": {"model": "m", "messages": [{"role": "user", "content": "word " * 20000}],
                            "max_tokens": 20},
}


def main() -> None:
    print("| body | bytes | check_json µs | msgspec decode µs |\n|---|---|---|---|")
    for name, value in BODIES.items():
        body = json.dumps(value).encode()
        number = 20000 if len(body) < 5000 else 2000
        checked = timeit.timeit(lambda body=body: check_json(body, 64), number=number) / number * 1e6
        decoded = timeit.timeit(lambda body=body: msgspec.json.decode(body), number=number) / number * 1e6
        print(f"| {name} | {len(body)} | {checked:.1f} | {decoded:.1f} |")


if __name__ == "__main__":
    main()
