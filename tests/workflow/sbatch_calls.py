"""Print, as JSON, the sbatch command the SLURM executor plugin builds for each job.

    python sbatch_calls.py OUT.json SNAKEMAKE_ARGUMENTS...   (e.g. --profile profiles/slurm)

Snakemake parses the arguments and profiles itself and builds the DAG of a dry-run; every
job that would go to SLURM (not local rules) then passes through the plugin's own
`get_submit_command` and `set_gres_string`, the two functions its `run_job` joins into
the sbatch call, so no cluster is needed. OUT.json gets one object per job: rule, jobid,
call (stdout is the dry-run's).
Runs in its own process because Snakemake changes the working directory and logging.
"""

from __future__ import annotations

import json
import sys

from snakemake import cli
from snakemake.workflow import Workflow
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry


def main(out: str, argv: list[str]) -> int:
    workflows = []
    execute = Workflow.execute

    def keep_workflow(self, *args, **kwargs):
        workflows.append(self)
        return execute(self, *args, **kwargs)

    # The workflow object is only reachable from inside Snakemake's run: remember it.
    Workflow.execute = keep_workflow
    parser, args = cli.parse_args([*argv, "--dry-run"])
    if args.executor != "slurm":
        print(f"the arguments select executor {args.executor!r}, not 'slurm'", file=sys.stderr)
        return 2
    if not cli.args_to_api(args, parser):
        return 1
    plugin = ExecutorPluginRegistry().get_plugin("slurm")
    settings = plugin.get_settings(args)
    workflow = workflows[0]
    # The dry-run's executor counts every job as local; judge locality (localrule, rules
    # that run nothing) as the SLURM run does.
    workflow._executor_plugin = plugin
    calls = []
    for job in workflow.dag.needrun_jobs(exclude_finished=False):
        if job.is_local:
            continue
        params = {
            "run_uuid": "dry-run",
            "slurm_logfile": f".snakemake/slurm_logs/rule_{job.name}/%j.log",
            "comment_str": f"rule_{job.name}",
            "account": "",
            "partition": "",
            "workdir": workflow.workdir_init,
        }
        call = get_submit_command(job, params, settings=settings) + set_gres_string(job)
        calls.append({"rule": job.name, "jobid": job.jobid, "call": call})
    with open(out, "w") as f:
        json.dump(calls, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
