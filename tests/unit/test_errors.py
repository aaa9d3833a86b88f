"""Which exceptions are the user's mistakes (one line) and which are bugs (a traceback)."""

from dreamdiffusion.errors import UserError, message, user_error


def caught(function):
    try:
        function()
    except Exception as error:  # noqa: BLE001
        return error
    raise AssertionError("nothing raised")


def test_the_projects_own_raise_statements_are_user_errors_and_slips_are_not():
    from dreamdiffusion.data.imagenet_eeg import ImageNetEEGDataModule

    deliberate = caught(lambda: ImageNetEEGDataModule("x.pth", "s_single.pth", "images", subject=0))
    assert user_error(deliberate) is deliberate
    slip = caught(lambda: {}["missing"])  # a KeyError not raised by a `raise` of the package: a bug
    assert user_error(slip) is None
    assert user_error(caught(lambda: int("x"))) is None


def test_a_wrapped_user_error_is_found_along_the_chain_and_said_in_one_line():
    def wrapped():
        try:
            raise UserError("bad value\nof x")
        except UserError:
            raise ValueError("Does not validate against any of the Union subtypes")  # noqa: B904 - chained as jsonargparse does

    found = user_error(caught(wrapped))
    assert isinstance(found, UserError) and message(found) == "bad value of x"


def test_a_missing_file_is_a_user_error_wherever_it_is_raised(tmp_path):
    error = caught(lambda: open(tmp_path / "absent.yaml"))
    assert user_error(error) is error and "absent.yaml" in message(error)
    assert user_error(caught(lambda: (_ for _ in ()).throw(OSError("socket closed")))) is None


def test_key_errors_lose_their_quotes():
    assert message(KeyError("lacks key 'eeg'")) == "lacks key 'eeg'"
