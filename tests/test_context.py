import pathlib

import pytest

from rlm_jupyter.core.context import describe_context, normalize_context, render_context_info


def test_string_description_has_type_length_and_lines():
    info = describe_context("ab\ncd")
    assert info == {"type": "str", "total_chars": 5, "n_lines": 2}
    assert "5 total characters" in render_context_info(info)


def test_list_and_dict_descriptions_give_part_lengths():
    info = describe_context(["aaa", "b", "cc"])
    assert info["n_parts"] == 3 and info["part_lengths"] == [3, 1, 2] and info["total_chars"] == 6
    info = describe_context({"x": "hello", "y": "hi"})
    assert info["keys"] == ["x", "y"] and info["total_chars"] == 7
    assert "made of 2 parts" in render_context_info(info)


def test_dataframe_description_has_rows_and_columns():
    pd = pytest.importorskip("pandas")
    info = describe_context(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert info["n_rows"] == 2 and info["columns"] == ["a", "b"]
    assert info["type"].startswith("pandas.") and info["type"].endswith("DataFrame")


def test_path_of_file_becomes_text_and_folder_becomes_dict(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("beta")
    (tmp_path / ".hidden").write_text("no")
    (tmp_path / "bin.dat").write_bytes(b"\0\1\2")
    assert normalize_context(tmp_path / "a.txt") == "alpha"
    assert normalize_context(tmp_path) == {"a.txt": "alpha", "sub/b.py": "beta"}


def test_missing_path_raises():
    with pytest.raises(FileNotFoundError):
        normalize_context(pathlib.Path("/no/such/place"))
