"""`python -m assistant train [--watch]` and `python -m assistant eval VERSION [--against live]`.

`train` starts a job (through the running server when there is one, so it hands cores over and applies
the promotion policy afterwards; else directly) and, with --watch, shows a tqdm bar until it ends.
`eval` runs the promotion gate for a version against live (or any version, or the base) and stores the
report with the version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from assistant.settings import add_cli_flags, settings_from_args
from training.cli import RemoteError, call_api, open_offline, server_running

TERMINAL = ("succeeded", "failed", "cancelled", "not_enough_data")


def cmd_train(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    overrides: dict[str, Any] = {}
    if args.max_steps:
        overrides = {"sft": {"max_steps": args.max_steps}}
    if server_running(settings):
        try:
            job_id = call_api(settings, "POST", "/admin/train", {"config": overrides or None})["job_id"]
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

        def get() -> dict[str, Any]:
            return dict(call_api(settings, "GET", f"/admin/jobs/{job_id}"))

        print(f"job {job_id} started by the server")
    else:
        from assistant.model import prepare_model_dir
        from training import JobAlreadyRunningError
        from training.config import JobConfig
        from training.jobs import JobManager

        model_dir, _ = prepare_model_dir(settings.model_path, settings.data_dir)
        jobs = JobManager(settings, model_dir)
        try:
            job_id = jobs.start(
                JobConfig.from_dict(overrides), curation={"require_review": settings.require_review}
            )
        except (JobAlreadyRunningError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

        def get() -> dict[str, Any]:
            jobs.reap()
            return jobs.get(job_id)

        print(f"job {job_id} started (no server running: the next `serve` registers its version)")
    if not args.watch:
        return 0
    from tqdm import tqdm

    bar = tqdm(total=1, unit="step", dynamic_ncols=True)
    try:
        while True:
            job = get()
            total = job.get("total_steps") or 1
            bar.total = total
            bar.n = min(job.get("step") or 0, total)
            loss = job.get("loss")
            bar.set_description(f"{job['status']} · {job.get('phase') or '-'}")
            if isinstance(loss, int | float):
                bar.set_postfix(loss=f"{loss:.4f}")
            bar.refresh()
            if job["status"] in TERMINAL:
                break
            time.sleep(1.0)  # polling a subprocess's progress, not synchronising a test
    except KeyboardInterrupt:
        print(f"\nstopped watching; the job goes on (cancel: POST /admin/jobs/{job_id}/cancel)")
        return 130
    finally:
        bar.close()
    print(
        f"job {job_id}: {job['status']}"
        + (f" → version {job['version']}" if job.get("version") else "")
        + (f"\n{job['error']}" if job.get("error") else "")
    )
    return 0 if job["status"] in ("succeeded", "not_enough_data") else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from training.evaluate import GateConfig, evaluate, format_report

    settings = settings_from_args(args)
    store, registry, _ = open_offline(settings)
    try:
        if registry.get(args.version) is None:
            print(
                f"error: unknown version {args.version!r}; `python -m assistant versions` lists them",
                file=sys.stderr,
            )
            return 2
        against = registry.live() if args.against == "live" else args.against
        live_dir = None if against in (None, "base") else settings.adapters_dir / against
        heldout = _heldout_dir(settings, args.version)
        config = GateConfig(max_suite_items=args.max_items) if args.max_items else GateConfig()
        report = evaluate(
            settings.adapters_dir / args.version, live_dir, registry_model_dir(settings), heldout, config
        )
        print(format_report(report))
        registry.set_gate_report(args.version, report.to_dict(), report.passed)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report.to_dict(), fh, indent=2)
        return 0 if report.passed else 3
    finally:
        store.close()


def registry_model_dir(settings: Any) -> Any:
    from assistant.model import prepare_model_dir

    return prepare_model_dir(settings.model_path, settings.data_dir)[0]


def _heldout_dir(settings: Any, version: str) -> Any:
    """The held-out data of the job that made `version` (it never trained on it)."""
    manifest_path = settings.adapters_dir / version / "manifest.json"
    if manifest_path.is_file():
        job_id = json.loads(manifest_path.read_text()).get("job_id")
        if job_id and (settings.jobs_dir / job_id / "datasets").is_dir():
            return settings.jobs_dir / job_id / "datasets"
    return None


def add_train(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="start a training job (LoRA SFT → DPO/KTO)")
    add_cli_flags(parser)
    parser.add_argument("--watch", action="store_true", help="show a progress bar until the job ends")
    parser.add_argument("--max-steps", type=int, help="cap the SFT steps (quick runs)")
    parser.set_defaults(func=cmd_train)


def add_eval(subparsers: Any) -> None:
    parser = subparsers.add_parser("eval", help="run the promotion gate for a version")
    add_cli_flags(parser)
    parser.add_argument("version")
    parser.add_argument("--against", default="live", help="live (default), base, or a version id")
    parser.add_argument("--max-items", type=int, help="sample the regression suite to this many prompts")
    parser.add_argument("--json", help="also write the report as JSON here")
    parser.set_defaults(func=cmd_eval)
