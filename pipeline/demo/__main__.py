"""`python -m pipeline.demo generate OUT_DIR --seed N [--scale demo|tiny]`
`python -m pipeline.demo serve SITE_DIR [--host 127.0.0.1] [--port 0] [--port-file F]`

`serve` writes the port to --port-file (atomically) once it is listening, so a parent
process (Airflow, a shell script) can wait for the file and then point
fetch.resolve_overrides at 127.0.0.1:PORT. It stops on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from pipeline.demo.generate import generate
from pipeline.demo.scales import SCALES
from pipeline.demo.server import MicroWeb


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.demo",
        description="Generate or serve the embedded micro-web (synthetic Reddit dump + web).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write OUT_DIR/dumps, OUT_DIR/site, ground_truth.json")
    gen.add_argument("out_dir")
    gen.add_argument("--seed", type=int, default=1234)
    gen.add_argument("--scale", choices=sorted(SCALES), default="demo")
    serve = sub.add_parser("serve", help="serve SITE_DIR (OUT_DIR/site) over HTTP")
    serve.add_argument("site_dir")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=0, help="0: any free port")
    serve.add_argument("--port-file", help="write the port here once listening")
    return parser


def _write_port(path: str, port: int) -> None:
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        truth = generate(args.out_dir, seed=args.seed, scale=args.scale)
        print(
            f"{args.out_dir}: {truth.submissions_total:,} submissions "
            f"(+{truth.malformed_lines} malformed lines) in {len(truth.dump_files)} dumps; "
            f"{truth.links_qualifying} qualifying links, {truth.pages_total} pages on "
            f"{truth.hosts_total} hosts; {truth.documents_written} documents expected"
        )
        return 0
    try:
        web = MicroWeb(args.site_dir, host=args.host, port=args.port)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"microweb: error: {e}", file=sys.stderr)
        return 2
    # SIGTERM stops serve_forever from another thread (shutdown() blocks the serving one).
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=web.stop).start())
    if args.port_file:
        _write_port(args.port_file, web.port)
    print(f"microweb: serving {len(web.index.hosts)} hosts on http://{web.address}", flush=True)
    try:
        web.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        web.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
