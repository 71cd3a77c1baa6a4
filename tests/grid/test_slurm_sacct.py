"""The local cluster's sacct shim (embedgrid.slurm.sacct) and the sweep's message for a job that never returned."""
from __future__ import annotations

from embedgrid.slurm.sacct import answer, completion_states, parse, queue_states

JOBCOMP = (  # jobcomp/filetxt lines as slurm-wlm 22.05 writes them (trimmed), one array of two tasks
    "JobId=4 UserId=root(0) GroupId=root(0) Name=my job JobState=COMPLETED Partition=debug NodeList=vm NodeCnt=1 "
    "Tres=cpu=1,mem=1G,node=1 Account= QOS= ArrayJobId=3 ArrayTaskId=0 DerivedExitCode=0:0 ExitCode=0:0 \n"
    "JobId=3 UserId=root(0) Name=wrap JobState=FAILED Partition=debug NodeList=vm ArrayJobId=3 ArrayTaskId=1 "
    "ExitCode=1:0 \n"
    "JobId=7 UserId=root(0) Name=wrap JobState=PREEMPTED Partition=debug NodeList=vm ExitCode=0:0 \n"
    "JobId=7 UserId=root(0) Name=wrap JobState=CANCELLED Partition=debug NodeList=vm ExitCode=0:15 \n"
    "JobId=8 UserId=root(0) Name=wrap JobState=TIMEOUT Partition=debug NodeList=vm ExitCode=0:0 \n"
)


def test_completion_log_names_array_tasks_as_submitit_does_and_the_last_line_wins(tmp_path):
    log = tmp_path / "jobcomp.txt"
    log.write_text(JOBCOMP)
    assert completion_states(log) == {"3_0": ("COMPLETED", "vm"), "3_1": ("FAILED", "vm"),
                                      "7": ("CANCELLED", "vm"), "8": ("TIMEOUT", "vm")}
    assert completion_states(tmp_path / "absent.txt") == {}


def test_a_live_queue_state_wins_and_only_the_asked_jobs_are_listed(tmp_path):
    log = tmp_path / "jobcomp.txt"
    log.write_text(JOBCOMP)
    queued = queue_states("8|PENDING|\n9_0|RUNNING|vm\n9_1|PENDING|\n\n")  # 8 was requeued after its timeout
    table = answer(["3", "8"], ["JobID", "State", "NodeList"], completion_states(log), queued)
    assert table.splitlines() == ["JobID|State|NodeList", "3_0|COMPLETED|vm", "3_1|FAILED|vm", "8|PENDING|"]
    assert answer(["9_1"], ["State", "JobID"], {}, queued).splitlines() == [
        "State|JobID", "RUNNING|9_0", "PENDING|9_1"]  # an array's main id lists all its tasks, as sacct does


def test_only_submitits_query_is_answered_and_anything_else_goes_to_sacct():
    assert parse(["-o", "JobID,State,NodeList", "--parsable2", "-j", "12", "-j", "13,14"]) == (
        ["12", "13", "14"], ["JobID", "State", "NodeList"])
    for other in (["-j", "12"], ["-o", "JobID,Elapsed", "--parsable2", "-j", "12"],
                  ["-o", "JobID,State", "--parsable2"], ["-o", "JobID", "--parsable2", "-j", "1", "--starttime", "x"]):
        assert parse(other) is None, other


def test_a_job_that_never_returned_is_reported_with_its_state_and_what_to_do(tmp_path):
    from submitit.core.utils import UncompletedJobError

    from embedgrid.grid.sweeper import job_ended_without_result

    error = UncompletedJobError(f"Job 7 (task: 0) with path {tmp_path}/.submitit/7/7_0_result.pkl\n"
                                "has not produced any output (state: CANCELLED)\nError stream produced:\n...")
    message = job_ended_without_result(error, tmp_path)
    assert message.startswith("job 7 ended without returning a result (state CANCELLED)")
    assert "launch the same command again to resume" in message and str(tmp_path) in message
