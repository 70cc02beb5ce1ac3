"""Prompt styles: applying, recognising, CSV reading/writing (A1111 styles.py rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.generation.styles import (
    PromptStyle,
    StyleCsvError,
    StyleDatabase,
    apply_styles_to_prompt,
    expand_style_paths,
    extract_style_text_from_prompt,
    read_styles_csv,
    write_styles_csv,
)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding, newline="")
    return path


# --- applying ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "styles", "expected"),
    [
        ("a cat", ["masterpiece"], "a cat, masterpiece"),
        ("a cat", ["best, {prompt}, 4k"], "best, a cat, 4k"),
        ("", ["masterpiece"], "masterpiece"),  # no leading ", "
        ("a cat", ["", "   "], "a cat"),  # empty styles change nothing
        ("  a cat  ", ["x", "{prompt} (y)"], "a cat, x (y)"),  # applied in order, prompt stripped
        ("a cat", ["{prompt} and {prompt}"], "a cat and a cat"),
        ("a cat # my note", ["vivid # style note"], "a cat, vivid"),  # comments stripped first
    ],
)
def test_apply_styles_to_prompt(prompt: str, styles: list[str], expected: str) -> None:
    assert apply_styles_to_prompt(prompt, styles) == expected


def test_apply_styles_can_keep_comments() -> None:
    assert apply_styles_to_prompt("a # b", ["c"], remove_comments=False) == "a # b, c"


@pytest.mark.parametrize(
    ("style", "prompt", "expected"),
    [
        ("masterpiece", "1girl, art by greg, masterpiece", (True, "1girl, art by greg")),
        ("masterpiece, {prompt}", "masterpiece, 1girl, art by greg", (True, "1girl, art by greg")),
        ("masterpiece, {prompt}", "exquisite, 1girl, art by greg", (False, "exquisite, 1girl, art by greg")),
        ("", "anything", (True, "anything")),
    ],
)
def test_extract_style_text_from_prompt(style: str, prompt: str, expected: tuple[bool, str]) -> None:
    assert tuple(extract_style_text_from_prompt(style, prompt)) == expected


# --- database ------------------------------------------------------------------------------------

STYLES_CSV = (
    "\ufeffname,prompt,negative_prompt\n"
    'Cinematic,"cinematic still, {prompt}, film grain","cartoon, drawing"\n'
    "Sharp, sharp focus,blurry\n"  # skipinitialspace: " sharp focus" -> "sharp focus"
    "# Disabled,never,used\n"
    'Quoted,"say ""hi""",\n'
)


@pytest.fixture
def database(tmp_path: Path) -> StyleDatabase:
    _write(tmp_path / "styles.csv", STYLES_CSV)
    return StyleDatabase([tmp_path / "styles.csv"])


def test_database_reads_a1111_csv(database: StyleDatabase, tmp_path: Path) -> None:
    assert list(database.styles) == ["Cinematic", "Sharp", "Quoted"]
    assert database.styles["Cinematic"] == PromptStyle(
        "Cinematic", "cinematic still, {prompt}, film grain", "cartoon, drawing", tmp_path / "styles.csv"
    )
    assert database.styles["Sharp"].prompt == "sharp focus"
    assert database.styles["Quoted"].prompt == 'say "hi"'
    assert database.styles["Quoted"].negative_prompt == ""
    assert database.load_errors == []


def test_database_applies_styles_to_both_prompts(database: StyleDatabase) -> None:
    names = ["Cinematic", "Sharp", "Unknown"]  # unknown names are ignored, as in A1111
    assert database.apply_styles_to_prompt("a fox", names) == "cinematic still, a fox, film grain, sharp focus"
    assert database.apply_negative_styles_to_prompt("lowres", names) == "lowres, cartoon, drawing, blurry"
    assert database.apply_negative_styles_to_prompt("", ["Sharp"]) == "blurry"


def test_extract_styles_round_trip(database: StyleDatabase) -> None:
    names = ["Cinematic", "Sharp"]
    prompt = database.apply_styles_to_prompt("a fox in snow", names)
    negative = database.apply_negative_styles_to_prompt("lowres", names)
    found = database.extract_styles_from_prompt(prompt, negative)
    assert found.styles == ["Cinematic", "Sharp"]
    assert (found.prompt, found.negative_prompt) == ("a fox in snow", "lowres")


def test_extract_styles_needs_both_prompts_to_match(database: StyleDatabase) -> None:
    found = database.extract_styles_from_prompt("a fox, sharp focus", "lowres")  # Sharp's negative missing
    assert found.styles == []
    assert (found.prompt, found.negative_prompt) == ("a fox, sharp focus", "lowres")


def test_old_two_column_format_and_multiple_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "name,text\nOld,old style text\nShared,from a\n")
    _write(tmp_path / "b.csv", "name,prompt,negative_prompt\nShared,from b,neg b\n")
    database = StyleDatabase([tmp_path / "a.csv", tmp_path / "b.csv"])
    assert database.styles["Old"].prompt == "old style text"
    assert database.styles["Old"].negative_prompt == ""
    assert database.styles["Shared"] == PromptStyle("Shared", "from b", "neg b", tmp_path / "b.csv")


def test_wildcard_paths(tmp_path: Path) -> None:
    folder = tmp_path / "styles"
    folder.mkdir()
    _write(folder / "one.csv", "name,prompt\nOne,1\n")
    _write(folder / "two.csv", "name,prompt\nTwo,2\n")
    default, files = expand_style_paths([folder / "*.csv"])
    assert default == folder / "one.csv"
    assert files == [folder / "one.csv", folder / "two.csv"]
    assert sorted(StyleDatabase([folder / "*.csv"]).styles) == ["One", "Two"]
    empty_default, _ = expand_style_paths([tmp_path / "none" / "*.csv"])
    assert empty_default == tmp_path / "none" / "styles.csv"


def test_missing_file_gives_empty_database(tmp_path: Path) -> None:
    database = StyleDatabase([tmp_path / "styles.csv"])
    assert database.styles == {} and database.load_errors == []
    assert database.apply_styles_to_prompt("a", ["x"]) == "a"


# --- malformed files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,prompt,negative_prompt\nok,a,b\nbad,a, b,c\n", r"line 3: 4 fields but the header has 3.*double quotes"),
        ("title,prompt\nx,y\n", "no 'name' column"),
        ("name,negative_prompt\nx,y\n", "no 'prompt' column"),
        ("", "empty file"),
        ('name,prompt\nx,"never closed\n', "not valid CSV"),
    ],
)
def test_malformed_csv_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path / "styles.csv", content)
    with pytest.raises(StyleCsvError, match=message) as raised:
        read_styles_csv(path)
    assert str(path) in str(raised.value)


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes("name,prompt\nCafé,x\n".encode("latin-1"))
    with pytest.raises(StyleCsvError, match="not UTF-8"):
        read_styles_csv(path)


def test_database_reports_bad_file_and_keeps_good_ones(tmp_path: Path) -> None:
    _write(tmp_path / "good.csv", "name,prompt\nGood,g\n")
    _write(tmp_path / "bad.csv", "title,prompt\nx,y\n")
    database = StyleDatabase([tmp_path / "good.csv", tmp_path / "bad.csv"])
    assert list(database.styles) == ["Good"]
    assert len(database.load_errors) == 1 and "bad.csv" in database.load_errors[0]


# --- writing ---------------------------------------------------------------------------------------


def test_write_is_readable_and_keeps_backup(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    first = [PromptStyle("A", 'with, comma and "quote"', "neg\nline")]
    write_styles_csv(path, first)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # utf-8-sig like A1111
    assert [(s.name, s.prompt, s.negative_prompt) for s in read_styles_csv(path)] == [
        ("A", 'with, comma and "quote"', "neg\nline")
    ]
    write_styles_csv(path, [PromptStyle("B", "b")])
    assert [s.name for s in read_styles_csv(Path(f"{path}.bak"))] == ["A"]
    assert [s.name for s in read_styles_csv(path)] == ["B"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_save_and_delete_styles(tmp_path: Path) -> None:
    _write(tmp_path / "styles.csv", "name,prompt\nKeep,k\nDrop,d\n")
    _write(tmp_path / "extra.csv", "name,prompt\nOnly,o\n")
    database = StyleDatabase([tmp_path / "styles.csv", tmp_path / "extra.csv"])
    stored = database.save_style(PromptStyle("New", "{prompt}, new", "bad"))
    assert stored.path == tmp_path / "styles.csv"  # new styles go to the default (first) file
    database.save_style(PromptStyle("Only", "o2"))  # replacing keeps the style's file
    database.delete_style("Drop")
    database.save()
    assert [(s.name, s.prompt) for s in read_styles_csv(tmp_path / "styles.csv")] == [
        ("Keep", "k"),
        ("New", "{prompt}, new"),
    ]
    assert [(s.name, s.prompt) for s in read_styles_csv(tmp_path / "extra.csv")] == [("Only", "o2")]
    database.reload()
    assert sorted(database.styles) == ["Keep", "New", "Only"]
    with pytest.raises(KeyError, match="no style named 'Ghost'"):
        database.delete_style("Ghost")
