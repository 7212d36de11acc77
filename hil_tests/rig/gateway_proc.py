"""Run the junction gateway for the HIL rig: `callbox gateway`'s code path with
one extra knob the TOML file does not have yet, the forwarding backoff cap
(compressed time: a control room that comes back must be retried within
seconds, not after the deployed 60 s cap).

    python -m callbox_rig.gateway_proc --config gw.toml [--forward-cap-s 2]

Prints the same ready line as `callbox gateway` and runs until SIGTERM or
SIGKILL (the rig's kill -9 scenario)."""

import argparse
import asyncio
import logging
import signal
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(prog="callbox_rig.gateway_proc")
    ap.add_argument("--config", required=True)
    ap.add_argument("--forward-base-s", type=float, default=1.0)
    ap.add_argument("--forward-cap-s", type=float, default=60.0)
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")

    from callbox_gateway import config as gwconfig
    from callbox_gateway.app import Gateway
    from callbox_gateway.forward import ForwardPolicy

    cfg = gwconfig.load(args.config)

    async def run():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        gw = Gateway(cfg, forward_policy=ForwardPolicy(base_s=args.forward_base_s, cap_s=args.forward_cap_s))
        try:
            await gw.start()
            print("gateway %s: http://%s:%d  lte %s  rs485 %s" % (
                cfg.gateway_id, cfg.http.host, gw.http_port, ("%s:%d" % (cfg.lte.host, gw.lte.port)) if gw.lte else "off",
                cfg.rs485.url or "off"), flush=True)
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        finally:
            await gw.stop()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
