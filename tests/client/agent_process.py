"""An agent in its own process: `record N` records N runs (printing each run id once it is
finished) and flushes; `exit N` records N runs and just ends (delivery is left to the interpreter's
exit); `flush` only delivers what the spool holds."""

import sys

from telemetry_client import TelemetryClient


def main() -> None:
    client = TelemetryClient()
    if sys.argv[1] == "exit":
        for index in range(int(sys.argv[2])):
            with client.track_run("alpha", "exiting", run_id=f"exit-{index:06d}") as ctx:
                ctx.log_event("step")
        return
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
