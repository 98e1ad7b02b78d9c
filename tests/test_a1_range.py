"""A1 ranges, read one way for workbooks and Google Sheets (the rules of a1_range.py, each on its boundary)."""

import pytest

from a1_range import a1_bounds, column_letters, looks_like_cells, quoted_sheet, split_a1_range


@pytest.mark.parametrize("range_, expected", [
    ("Tickets", ("Tickets", "")),
    ("Tickets!A2:F", ("Tickets", "A2:F")),
    ("'My sheet'!A2:F", ("My sheet", "A2:F")),
    ("'It''s here'!B3", ("It's here", "B3")),
    ("'a!b'!A1:C", ("a!b", "A1:C")),          # a '!' inside a quoted name: the last one splits
    ("A2:F", ("", "A2:F")),
    ("A:F", ("", "A:F")),
    (" A2:F ", ("", "A2:F")),
    ("'Q'", ("Q", "")),                        # the shortest quoted name
    ("'", ("'", "")),                          # a lone quote is a name, not a quoted one
    ("'x", ("'x", "")),
    ("x'", ("x'", "")),
    ("Sheet1!", ("Sheet1", "")),
])
def test_a_range_splits_into_sheet_and_cells(range_, expected):
    assert split_a1_range(range_) == expected


@pytest.mark.parametrize("column, letters", [(1, "A"), (2, "B"), (26, "Z"), (27, "AA"), (52, "AZ"), (53, "BA"),
                                             (702, "ZZ"), (703, "AAA"), (16384, "XFD")])
def test_column_numbers_and_letters_go_both_ways(column, letters):
    assert column_letters(column) == letters
    assert a1_bounds(f"{letters}1")[1] == column
    assert a1_bounds(f"{letters.lower()}7:{letters}9") == (7, column, 9, column)


@pytest.mark.parametrize("title, quoted", [("Sheet1", "'Sheet1'"), ("It's", "'It''s'"), ("''", "''''''")])
def test_a_sheet_title_is_quoted_so_it_splits_back(title, quoted):
    assert quoted_sheet(title) == quoted
    assert split_a1_range(f"{quoted}!A1:B2") == (title, "A1:B2")


@pytest.mark.parametrize("text, is_cells", [("A1", True), ("A1:F", True), ("2:2", True), ("AAA10:ZZZ9", True),
                                            ("AAAA1", False), ("Tickets", False), ("A1:", False), ("", False)])
def test_cells_are_told_from_sheet_names(text, is_cells):
    assert looks_like_cells(text) is is_cells


def test_text_that_is_not_cells_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="not cells"):
        a1_bounds("not cells")
