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


def _saved_states():
    """Not AWS behaviour: a test's fast path. The reliability sweep starts
    thousands of runs from the same few accounts (empty, a stack applied, a
    stack destroyed); building each again costs a whole run. POST
    /moto-api/mbstack/save?name=N keeps a deep copy of every service's
    resources; POST /moto-api/mbstack/restore?name=N puts a fresh copy of them
    back, as if nothing had happened since. Step Functions is left as it is:
    its executions hold running threads, and its state machine does not change
    between a save and a restore."""
    import copy
    from collections import defaultdict
    from urllib.parse import parse_qs, urlparse

    from moto.core.base_backend import BackendDict, backend_lock
    from moto.moto_api._internal import urls

    kept = ("stepfunctions",)
    saved = {}

    def defaultdict_copy(self, memo):
        # A defaultdict subclass whose __init__ takes other arguments (SSM's
        # ParameterDict) cannot be rebuilt by deepcopy's default path.
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        defaultdict.__init__(new, self.default_factory)
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        for k, v in self.items():
            dict.__setitem__(new, copy.deepcopy(k, memo), copy.deepcopy(v, memo))
        return new

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    def managed(payloads):
        # AWS's managed policies (about 1,300 per IAM backend): loaded once,
        # never changed but for their attachment count. Shared between the
        # saved and the live account instead of copied each time, their counts
        # kept apart.
        out = []
        for payload in payloads:
            for regions in payload.values():
                for backend in regions.values():
                    out.extend(getattr(backend, "aws_managed_policies", None) or [])
        return out

    def copied(payloads, shared):
        for cls in subclasses(defaultdict):
            if cls.__init__ is not defaultdict.__init__ and "__deepcopy__" not in cls.__dict__:
                cls.__deepcopy__ = defaultdict_copy
        return copy.deepcopy(payloads, {id(p): p for p in shared})

    def name_of(full_url):
        return parse_qs(urlparse(full_url).query).get("name", [""])[0]

    def save(request, full_url, headers):
        name = name_of(full_url)
        with backend_lock:
            dicts = [bd for bd in BackendDict._instances if bd.service_name not in kept]
            payloads = [
                {account: dict(per_account) for account, per_account in bd.items()}
                for bd in dicts
            ]
            shared = managed(payloads)
            counts = [(p, p.attachment_count) for p in shared]
            saved[name] = (dicts, copied(payloads, shared), shared, counts)
        return 200, {}, json.dumps({"saved": name, "services": len(dicts)})

    def restore(request, full_url, headers):
        name = name_of(full_url)
        if name not in saved:
            return 404, {}, json.dumps({"error": f"no saved state {name!r}"})
        dicts, payloads, shared, counts = saved[name]
        fresh = copied(payloads, shared)
        for policy, count in counts:
            policy.attachment_count = count
        with backend_lock:
            for bd in list(BackendDict._instances):
                if bd.service_name in kept:
                    continue
                for per_account in bd.values():
                    dict.clear(per_account)
            for bd, payload in zip(dicts, fresh):
                for account, regions in payload.items():
                    per_account = bd[account]
                    for region, backend in regions.items():
                        dict.__setitem__(per_account, region, backend)
                if bd not in BackendDict._instances:
                    BackendDict._instances.append(bd)
        return 200, {}, json.dumps({"restored": name})

    urls.url_paths["{0}/moto-api/mbstack/save"] = save
    urls.url_paths["{0}/moto-api/mbstack/restore"] = restore


def _instance_interfaces():
    """EC2: an instance's source/destination check is its primary network
    interface's (ModifyInstanceAttribute SourceDestCheck changes the
    interface; an instance launched on an interface with the check off has it
    off); moto keeps two flags. And a terminated instance lets go of the
    interfaces it does not delete (DeleteOnTermination false): they become
    `available` again; moto leaves them attached to the terminated instance."""
    from moto.ec2.models.instances import Instance

    def checked(self):
        nic = getattr(self, "nics", {}).get(0)
        if nic is not None:
            return nic.source_dest_check
        return self.__dict__.get("_mbstack_source_dest_check", True)

    def set_checked(self, value):
        if isinstance(value, str):
            value = value.lower() != "false"
        self.__dict__["_mbstack_source_dest_check"] = value
        nic = getattr(self, "nics", {}).get(0)
        if nic is not None:
            nic.source_dest_check = value

    Instance.source_dest_check = property(checked, set_checked)
    original = Instance.terminate

    def terminate(self):
        previous = original(self)
        # Let go of the interface but keep it in the instance's own record:
        # moto reads a terminated instance's private IP from it.
        for nic in list(self.nics.values()):
            if not nic.delete_on_termination and nic.instance is self:
                nic.instance = None
                nic.attachment_id = None
                nic.attach_time = None
                nic.status = "available"
                nic.device_index = None
        return previous

    Instance.terminate = terminate


_execution_status_events()
_uncatchable_errors()
_lambda_connection_errors()
_saved_states()
_instance_interfaces()
