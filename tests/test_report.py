"""refbinn.report.table: the plain-text table every command prints."""
import numpy as np
import pytest

from refbinn.report import table


def test_table_layout_floats_and_blanks():
    out = table([("a", 0.123456789, None), ("bb", np.float32(0.123456789), 7)], ["name", "x", "n"])
    assert out.splitlines() == ["name  x       n",
                                "----  ------  -",
                                "a     0.1235   ",
                                "bb    0.1235  7"]                 # float32 cells: 4 decimals too


def test_short_rows_are_blank_at_the_end_and_long_rows_an_error():
    assert table([(1.0, 2.0), (3.0,)], ["a", "b"]).splitlines()[-1] == "3.0000        "
    with pytest.raises(ValueError, match="3 cells, more than the 2 headers"):
        table([(1, 2, 3)], ["a", "b"])
