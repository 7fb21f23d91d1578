"""``tuning.errors``: the one line a user reads for an error."""

from tuning.errors import first_line, one_line


def test_an_error_is_its_type_and_the_first_line_of_its_message():
    error = OSError("No space left on device\n  while writing checkpoint_000003")
    assert first_line(error) == "No space left on device"
    assert one_line(error) == "OSError: No space left on device"
    assert one_line(ValueError()) == "ValueError: " and first_line(RuntimeError("  \n")) == ""
