"""`%durable approve RUN --field key=value` in a real kernel: a form declared in the
notebook (a dataclass that reaches the worker pickled by value) is filled from the magic's
texts, typed by the form; a wrong value is refused naming the field, nothing resolved."""

TASK = '''
import dataclasses
from typing import Literal

@dataclasses.dataclass
class Rollout:
    percent: int = dataclasses.field(metadata={"minimum": 0, "maximum": 100})
    region: Literal["eu", "us"] = "eu"
    dry_run: bool = False

@dn.task(id="magic-form")
def rollout():
    d = dn.approval("go", form=Rollout)
    return {"type": type(d.values).__name__, **dataclasses.asdict(d.values)}

run = rollout.trigger()
import time
while run.status != "WAITING": time.sleep(0.05)
'''


def test_the_magic_fills_a_typed_form(kernel):
    kernel.ok(TASK)
    bad = kernel.run("%durable approve run --field percent=250")
    assert bad.ename == "FormInvalid" and "form field 'percent' must be at most 100" in \
        bad.evalue
    assert kernel.value("run.waits[0]['outcome']") is None
    usage = kernel.run("%durable approve run --field percent")
    assert usage.ename == "UsageError" and "KEY=VALUE" in usage.evalue
    out = kernel.ok("%durable approve run --field percent=30 --field region=us "
                    "--field dry_run=yes")
    assert "approved: approval 'go'" in out.stdout
    assert kernel.value("run.result(timeout=30)") == {
        "type": "Rollout", "percent": 30, "region": "us", "dry_run": True}
