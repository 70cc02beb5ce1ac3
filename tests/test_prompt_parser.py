"""A1111 prompt syntax: attention, prompt editing, AND, comments, extra-network tags.

Expected values are A1111's own doctest examples plus cases computed with A1111's lark grammar.
"""

from __future__ import annotations

import pytest

from modules.generation.prompt_parser import (
    ExtraNetworkParams,
    PromptSyntaxError,
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    parse_extra_network_prompts,
    parse_extra_network_tags,
    parse_prompt_attention,
    strip_comments,
)

# --- attention ---------------------------------------------------------------------------------

ATTENTION_CASES = [
    # A1111's docstring examples
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
    # more of the same rules
    ("", [("", 1.0)]),
    ("[a]", [("a", 1 / 1.1)]),
    ("[[a]]", [("a", 1 / 1.1 / 1.1)]),
    ("(a:1.3)", [("a", 1.3)]),
    ("( a : 0.5 )", [(" a ", 0.5)]),
    ("(a:-1)", [("a", -1.0)]),
    ("((a):2)", [("a", 2.2)]),
    ("[unclosed square", [("unclosed square", 1 / 1.1)]),
    ("a) b] c", [("a) b] c", 1.0)]),
    ("x:1.5) y", [("x:1.5) y", 1.0)]),
    ("a:b", [("a:b", 1.0)]),
    ("\\\\ back\\slash", [("\\ backslash", 1.0)]),  # \\ is a backslash; a lone \ is dropped
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("BREAK", [("", 1.0), ("BREAK", -1.0), ("", 1.0)]),
    ("aBREAK b", [("aBREAK b", 1.0)]),
    ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),  # weighted BREAK is no longer a break
    ("(a)(b:1.1)", [("ab", 1.1)]),
]


@pytest.mark.parametrize(("prompt", "expected"), ATTENTION_CASES)
def test_parse_prompt_attention(prompt: str, expected: list[tuple[str, float]]) -> None:
    got = parse_prompt_attention(prompt)
    assert [span.text for span in got] == [text for text, _ in expected]
    assert [span.weight for span in got] == pytest.approx([weight for _, weight in expected], rel=1e-12)


def test_attention_exact_float_products_like_a1111() -> None:
    # A1111's doctest prints these exact floats: the multiplications happen in the same order.
    weights = [span.weight for span in parse_prompt_attention("a (((house:1.3)) (((sky)))")]
    assert weights == [1.0, 1.5730000000000004, 1.1, 1.4641000000000006]


@pytest.mark.parametrize("prompt", ["(a:1.2.3)", "(a:.)", "(a: +1..2 )"])
def test_invalid_attention_weight_is_a_clear_error(prompt: str) -> None:
    with pytest.raises(PromptSyntaxError, match="invalid attention weight"):
        parse_prompt_attention(prompt)


# --- prompt editing schedules -------------------------------------------------------------------


def _schedule(prompt: str, steps: int = 10, hires: int | None = None, old: bool = False) -> list[tuple[int, str]]:
    schedule = get_learned_conditioning_prompt_schedules([prompt], steps, hires, old)[0]
    return [(entry.end_at_step, entry.text) for entry in schedule]


ALTERNATE_10 = [(i, "a" if i % 2 else "(b:1.1)") for i in range(1, 11)]

# A1111's docstring cases (base steps 10)
DOCSTRING_SCHEDULES = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    # The docstring also lists "a [{b|d{:.5] c" ("not handling this right now") with an outdated
    # expectation; A1111's grammar cannot parse it ('|' outside [a|b]), see GRAMMAR_SCHEDULES.
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", ALTERNATE_10),
    ("[fe|]male", [(i, "female" if i % 2 else "male") for i in range(1, 11)]),
    ("[fe|||]male", [(i, "female" if i % 4 == 1 else "male") for i in range(1, 11)]),
]


@pytest.mark.parametrize(("prompt", "expected"), DOCSTRING_SCHEDULES)
def test_schedule_docstring_examples(prompt: str, expected: list[tuple[int, str]]) -> None:
    assert _schedule(prompt) == expected


def test_schedule_docstring_hires_examples() -> None:
    assert _schedule("a [b:.5] c", 10, 10) == [(10, "a b c")]
    assert _schedule("a [b:1.5] c", 10, 10) == [(5, "a  c"), (10, "a b c")]


# Computed with A1111's lark grammar and schedule code: (prompt, steps, hires_steps, old rule, expected)
GRAMMAR_SCHEDULES = [
    (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]",
        100,
        None,
        False,
        [
            (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
            (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
            (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
            (75, "fantasy landscape with a lake and an oak in background masterful"),
            (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
        ],
    ),
    ("a [b:1.0] c", 10, None, False, [(10, "a  c")]),  # '.' -> fraction: 1.0 = all steps
    ("a [b:1.0] c", 10, None, True, [(1, "a  c"), (10, "a b c")]),  # old rule: >= 1 is a step
    ("a [b:0.5] c", 10, None, True, [(5, "a  c"), (10, "a b c")]),
    ("a [b:3] c", 10, None, True, [(3, "a  c"), (10, "a b c")]),
    ("a [b:15] c", 10, 10, False, [(5, "a  c"), (10, "a b c")]),  # hires: steps above base land in pass 2
    ("a [b:5] c", 10, 10, False, [(10, "a b c")]),
    ("a [b:c:1.25] d", 10, 20, False, [(5, "a b d"), (20, "a c d")]),
    ("[a|b] x", 10, 4, False, [(1, "a x"), (2, "b x"), (3, "a x"), (4, "b x")]),
    ("a | b [c:2]", 10, None, False, [(10, "a | b [c:2]")]),  # a stray '|' -> no editing at all
    ("a [b:2] \\", 10, None, False, [(10, "a [b:2] \\")]),  # a dangling backslash, same
    ("[a:b:c:3]", 10, None, False, [(10, "[a:b:c:3]")]),
    ("[a:-1] [b:0]", 10, None, False, [(10, "a b")]),
    ("[cat:dog:0.5]", 7, None, False, [(3, "cat"), (7, "dog")]),
    ("[cat:dog:0.5]", 7, None, True, [(3, "cat"), (7, "dog")]),
    ("[a:b:2.9]", 3, None, False, [(3, "a")]),
    ("[a:b:100]", 10, None, False, [(10, "a")]),
    ("[a|[b:c:5]]", 6, None, False, [(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "a"), (6, "c")]),
    ("(x [a:b:2]:1.2)", 4, None, False, [(2, "(x a:1.2)"), (4, "(x b:1.2)")]),
    ("a [b:1e1]", 20, None, False, [(10, "a "), (20, "a b")]),
    ("[a: 3 ]", 10, None, False, [(3, ""), (10, "a")]),
    ("[x:+3]", 10, None, False, [(3, ""), (10, "x")]),
    ("[[b:3]", 10, None, False, [(3, "["), (10, "[b")]),
    ("(a [b:2] c", 10, None, False, [(2, "(a  c"), (10, "(a b c")]),
    ("[a:3:4]", 10, None, False, [(4, "a"), (10, "3")]),
    ("[:3]", 10, None, False, [(3, ""), (10, "")]),
    ("[a::3]", 10, None, False, [(3, "a"), (10, "")]),
    ("[]", 10, None, False, [(10, "[]")]),
    ("[a:.]", 10, None, False, [(10, "[a:.]")]),
    ("a [{b|d{:.5] c", 10, None, False, [(10, "a [{b|d{:.5] c")]),
]


@pytest.mark.parametrize(("prompt", "steps", "hires", "old", "expected"), GRAMMAR_SCHEDULES)
def test_schedules_match_a1111_grammar(
    prompt: str, steps: int, hires: int | None, old: bool, expected: list[tuple[int, str]]
) -> None:
    assert _schedule(prompt, steps, hires, old) == expected


def test_schedules_keep_prompt_order_and_duplicates() -> None:
    result = get_learned_conditioning_prompt_schedules(["a [b:2]", "c", "a [b:2]"], 4)
    assert result == [[(2, "a "), (4, "a b")], [(4, "c")], [(2, "a "), (4, "a b")]]
    assert result[0][0].end_at_step == 2 and result[0][0].text == "a "


# --- AND ---------------------------------------------------------------------------------------


def test_multicond_splits_on_and_with_weights() -> None:
    result = get_multicond_prompt_list(["a cat AND a dog:0.5", "a dog : -1.5 AND ANDROID", "a cat"])
    assert result.flat_prompts == ["a cat", " a dog", "a dog", " ANDROID"]
    assert [[tuple(ref) for ref in refs] for refs in result.per_prompt] == [
        [(0, 1.0), (1, 0.5)],
        [(2, -1.5), (3, 1.0)],
        [(0, 1.0)],
    ]
    assert result.index_of == {"a cat": 0, " a dog": 1, "a dog": 2, " ANDROID": 3}


def test_multicond_weight_forms_and_multiline() -> None:
    result = get_multicond_prompt_list(["x:2 AND y:.5 AND z:3. AND w: 1", "line1\nline2 AND q"])
    assert [ref.weight for ref in result.per_prompt[0]] == [2.0, 0.5, 3.0, 1.0]
    assert result.flat_prompts[:4] == ["x", " y", " z", " w"]
    assert result.flat_prompts[4] == "line1\nline2"


def test_multicond_unpacks_like_a1111_triple() -> None:
    res_indexes, flat, indexes = get_multicond_prompt_list(["a AND b"])
    assert flat == ["a", " b"] and indexes == {"a": 0, " b": 1}
    assert [(i, w) for i, w in res_indexes[0]] == [(0, 1.0), (1, 1.0)]


# --- comments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a cat # tabby\nsitting", "a cat \nsitting"),
        ("# whole line\na cat", "\na cat"),
        ("a cat\n# whole line\nsitting", "a cat\nsitting"),
        ("a cat #", "a cat \n"),
        ("no comment", "no comment"),
        ("a #1\nb #2\nc", "a \nb \nc"),
    ],
)
def test_strip_comments(prompt: str, expected: str) -> None:
    assert strip_comments(prompt) == expected


# --- extra networks ----------------------------------------------------------------------------


def test_extra_network_tags_are_removed_and_parsed() -> None:
    parsed = parse_extra_network_tags("a <lora:detail:0.6> cat <hypernet:h1> <lora:style:te=0.5:unet=1:x=y=z>, <bad>")
    assert parsed.prompt == "a  cat  , <bad>"
    assert list(parsed.networks) == ["lora", "hypernet"]
    first, second = parsed.networks["lora"]
    assert first == ExtraNetworkParams(("detail", "0.6"), ("detail", "0.6"), {})
    assert second.items == ("style", "te=0.5", "unet=1", "x=y=z")
    assert second.positional == ("style", "x=y=z")  # 'a=b=c' is not a key=value pair
    assert second.named == {"te": "0.5", "unet": "1"}
    assert parsed.networks["hypernet"][0].positional == ("h1",)


def test_extra_network_tags_need_a_word_kind_and_arguments() -> None:
    parsed = parse_extra_network_tags("<lora:> <my-lora:x> <:x> plain")
    assert parsed.prompt == "<lora:> <my-lora:x> <:x> plain"
    assert parsed.networks == {}


def test_extra_network_batch_uses_first_prompt_tags() -> None:
    batch = parse_extra_network_prompts(["a <lora:x:1>", "b <lora:y:1>"])
    assert batch.prompts == ["a ", "b "]
    assert [p.items for p in batch.networks["lora"]] == [("x", "1")]
    assert parse_extra_network_prompts([]).networks == {}
