"""The errors users catch: each is a DurableError and the builtin type its meaning implies."""

import pytest

from durable_nb.core import errors as E


@pytest.mark.parametrize("cls,builtin", [
    (E.RunNotFound, LookupError), (E.NotPicklable, TypeError), (E.PayloadTooLarge, ValueError),
    (E.EngineUnavailable, ConnectionError), (E.WaitTimeout, TimeoutError),
    (E.Forbidden, PermissionError),
])
def test_each_error_is_caught_as_its_builtin_kind(cls, builtin):
    with pytest.raises(builtin):
        raise cls("x")
    with pytest.raises(E.DurableError):
        raise cls("x")


def test_abort_run_is_not_a_durable_error():
    """AbortRun is raised by user code to end its run; `except DurableError` must not eat it."""
    assert not issubclass(E.AbortRun, E.DurableError)


def test_run_failed_names_the_run_status_and_error():
    err = E.RunFailed("run_1", "FAILED", {"type": "KeyError", "message": "'k'",
                                          "traceback": "Traceback ...\nKeyError: 'k'\n"})
    assert str(err) == "run run_1 ended FAILED: KeyError: 'k'"
    assert err.traceback.endswith("KeyError: 'k'\n")
    assert (err.run_id, err.status) == ("run_1", "FAILED")


def test_run_failed_without_an_error_record():
    err = E.RunFailed("run_2", "CANCELED", None)
    assert str(err) == "run run_2 ended CANCELED"
    assert err.error == {} and err.traceback is None


def test_api_error_keeps_its_http_status():
    err = E.ApiError(409, "the run is not waiting")
    assert err.status == 409 and str(err) == "the run is not waiting"
