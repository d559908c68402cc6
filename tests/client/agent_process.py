"""An agent in its own process, for the kill tests: `record N` records N runs (printing each run id
once it is finished), `flush` only delivers what the spool holds."""

import sys

from telemetry_client import TelemetryClient


def main() -> None:
    client = TelemetryClient()
    if sys.argv[1] == "record":
        for index in range(int(sys.argv[2])):
            with client.track_run("alpha", "killed", run_id=f"kill-{index:06d}") as ctx:
                for step in range(3):
                    ctx.log_event("step", {"n": step})
            print(ctx.run_id, flush=True)
    ok = client.flush(timeout=90)
    client.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
