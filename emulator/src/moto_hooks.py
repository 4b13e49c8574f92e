# The emulator's hooks into moto's server process: AWS behaviour that moto lacks
# and that only moto's own process can see. Run before moto's server starts
# (emulator/src/lib.rs). Each hook is small and says which AWS behaviour it plays.
import json
import os
import threading
import urllib.request


def _execution_status_events():
    """Step Functions sends EventBridge a "Step Functions Execution Status
    Change" event whenever an execution ends (SUCCEEDED, FAILED, TIMED_OUT,
    ABORTED), including the ends no Catch sees: a States.Runtime error, a
    StopExecution, a time-out. moto sends none. Each end is posted to the front
    door (MOTO_PORT), which delivers it to the matching rules as EventBridge
    does (emulator/src/events.rs)."""
    from moto.stepfunctions.parser.backend import execution as ex

    port = os.environ.get("MOTO_PORT")
    if not port:
        return
    original = ex.BaseExecutionWorkerCommunication.terminated

    def millis(d):
        return int(d.timestamp() * 1000) if d is not None else None

    def terminated(self):
        original(self)
        e = self.execution
        try:
            status = e.exec_status.value if hasattr(e.exec_status, "value") else str(e.exec_status)
            body = json.dumps(
                {
                    "executionArn": e.exec_arn,
                    "stateMachineArn": e.state_machine.arn,
                    "name": e.name,
                    "status": status,
                    "startDate": millis(e.start_date),
                    "stopDate": millis(e.stop_date),
                    "input": json.dumps(e.input_data, separators=(",", ":")),
                    "error": e.error,
                    "cause": e.cause,
                    "account": e.account_id,
                    "region": e.region_name,
                }
            ).encode()
        except Exception as err:  # the event is best effort, as on AWS
            print(f"mbstack hook: no status event for an execution: {err!r}", flush=True)
            return

        def post():
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/mbstack-emulator/execution-status",
                data=body,
                method="POST",
                headers={"content-type": "application/json"},
            )
            try:
                urllib.request.urlopen(req, timeout=60).read()
            except Exception as err:
                print(f"mbstack hook: status event not delivered: {err!r}", flush=True)

        threading.Thread(target=post, daemon=True).start()

    ex.BaseExecutionWorkerCommunication.terminated = terminated


def _uncatchable_errors():
    """AWS: "The States.ALL error type ... can't catch the
    States.DataLimitExceeded terminal error or Runtime error types" (Step
    Functions developer guide, "Handling errors in Step Functions workflows").
    moto's States.ALL matches every error, so a run that would end at once on
    AWS is rolled back by its Catch in moto. A Retry or Catch that names the
    error itself still matches it."""
    from moto.stepfunctions.parser.asl.component.common.error_name import (
        error_equals_decl as decl,
    )

    uncatchable = ("States.Runtime", "States.DataLimitExceeded")
    original = decl.ErrorEqualsDecl._eval_body

    def _eval_body(self, env):
        error_name = env.stack[-1] if env.stack else None
        name = getattr(error_name, "error_name", None)
        if (
            name in uncatchable
            and decl.ErrorEqualsDecl._STATE_ALL_ERROR in self.error_names
        ):
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    decl.ErrorEqualsDecl._eval_body = _eval_body


def _lambda_connection_errors():
    """AWS names a failure of Step Functions' own call to Lambda that got no
    answer (a connection closed or refused, a time-out) `Lambda.SdkClientException`,
    one of the transient Lambda errors its best practices say to retry ("Handle
    transient Lambda service exceptions"). moto turns any such exception into
    `States.Runtime`, which nothing retries and (on AWS, and in this emulator)
    no Catch sees: a run whose invocation's connection closed ended at once,
    and inside a Parallel branch moto failed the whole execution with
    "ValueError(Custom Error Names MUST NOT begin with the prefix 'States.' …)"."""
    from botocore.exceptions import BotoCoreError
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_lambda as lam,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = lam.StateTaskServiceLambda._from_error

    def _from_error(self, env, ex):
        if isinstance(ex, BotoCoreError):
            error = "Lambda.SdkClientException"
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(error),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=error,
                        cause=f"Unable to execute HTTP request: {ex}",
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return original(self, env, ex)

    lam.StateTaskServiceLambda._from_error = _from_error


_execution_status_events()
_uncatchable_errors()
_lambda_connection_errors()
