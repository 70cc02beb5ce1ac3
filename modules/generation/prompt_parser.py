"""A1111 prompt syntax: attention weights, prompt editing schedules, AND, comments, extra-network tags.

Behaviour follows AUTOMATIC1111's modules/prompt_parser.py, extra_networks.py and the comments
script. A1111 parses schedules with a lark (Earley) grammar; this module uses a recursive-descent
parser instead, because lark is not a dependency here. Differential runs against the grammar on
~100k random prompts agree except in one corner the grammar leaves ambiguous: a top-level
editing bracket directly followed by 2+ unmatched bracket/colon characters ("[a:b:3]::",
"[a:3]]]"), where lark's pick between "edit" and "literal text" flips with the parity of such
runs. There we always read the edit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from modules.networks.types import ExtraNetworkParams


class PromptSyntaxError(ValueError):
    """A prompt that A1111 would also reject (it raises there too), with the offending part named."""


# --------------------------------------------------------------------------------------------
# Attention: (a) x1.1, [a] /1.1, (a:w), escapes, BREAK


class AttentionSpan(NamedTuple):
    """A piece of prompt text and its attention multiplier; ("BREAK", -1.0) marks a chunk break."""

    text: str
    weight: float


BREAK_SPAN_TEXT = "BREAK"
BREAK_SPAN_WEIGHT = -1.0
ROUND_BRACKET_MULTIPLIER = 1.1
SQUARE_BRACKET_MULTIPLIER = 1 / 1.1

# One token per match; the order of the alternatives decides (A1111's tokenisation).
_ATTENTION_TOKEN = re.compile(
    r"""
      \\[()\[\]\\]                 # escaped bracket or backslash: literal character
    | \\                           # any other backslash: dropped
    | [(\[]                        # opening bracket
    | :\s*([+-]?[.\d]+)\s*\)       # ':weight)' closes a round bracket with an explicit weight
    | [)\]]                        # closing bracket
    | [^\\()\[\]:]+                # plain text
    | :                            # a colon that closes nothing: plain text
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str) -> list[AttentionSpan]:
    """Split a prompt into (text, weight) spans the way A1111 does.

    Nested brackets multiply, unclosed brackets apply to the rest of the prompt, runs of equal
    weight are merged, and BREAK becomes its own ("BREAK", -1) span (a BREAK inside brackets gets
    its weight multiplied too and then no longer counts as a break, as in A1111).
    """
    spans: list[list[str | float]] = []
    round_starts: list[int] = []
    square_starts: list[int] = []

    def multiply_from(start: int, multiplier: float) -> None:
        for span in spans[start:]:
            span[1] = float(span[1]) * multiplier

    for match in _ATTENTION_TOKEN.finditer(text):
        token, explicit_weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            spans.append([token[1:], 1.0])
        elif token == "(":
            round_starts.append(len(spans))
        elif token == "[":
            square_starts.append(len(spans))
        elif explicit_weight is not None and round_starts:
            multiply_from(round_starts.pop(), _attention_weight(explicit_weight, token))
        elif token == ")" and round_starts:
            multiply_from(round_starts.pop(), ROUND_BRACKET_MULTIPLIER)
        elif token == "]" and square_starts:
            multiply_from(square_starts.pop(), SQUARE_BRACKET_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    spans.append([BREAK_SPAN_TEXT, BREAK_SPAN_WEIGHT])
                spans.append([part, 1.0])

    for start in round_starts:
        multiply_from(start, ROUND_BRACKET_MULTIPLIER)
    for start in square_starts:
        multiply_from(start, SQUARE_BRACKET_MULTIPLIER)

    if not spans:
        spans = [["", 1.0]]
    merged: list[AttentionSpan] = []
    for span_text, weight in spans:
        if merged and merged[-1].weight == weight:
            merged[-1] = AttentionSpan(merged[-1].text + str(span_text), float(weight))
        else:
            merged.append(AttentionSpan(str(span_text), float(weight)))
    return merged


def _attention_weight(raw: str, token: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise PromptSyntaxError(f"invalid attention weight {raw!r} in {token!r}") from None


# --------------------------------------------------------------------------------------------
# Prompt editing: [from:to:when], [to:when], [from::when], alternation [a|b]


class PromptScheduleEntry(NamedTuple):
    """`text` is the prompt used up to and including sampling step `end_at_step`."""

    end_at_step: int
    text: str


@dataclass(frozen=True)
class _Scheduled:
    before: tuple[_Node, ...] | None
    after: tuple[_Node, ...]
    when_text: str


@dataclass(frozen=True)
class _Alternate:
    options: tuple[tuple[_Node, ...], ...]


_Node = str | _Scheduled | _Alternate

# lark's common.SIGNED_NUMBER, with optional whitespace around it (the grammar allows it there).
_SCHEDULE_NUMBER = re.compile(r"\s*([+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+))\s*")
_STRUCTURE_CHARS = frozenset("[]():|")


# Deeper bracket nesting is refused: the parser recurses per level, and ~300 levels exhaust
# Python's stack (a RecursionError, HTTP 500). Real prompts nest a handful of levels.
MAX_PROMPT_NESTING = 100


class PromptTooComplex(ValueError):
    """A prompt nested deeper than MAX_PROMPT_NESTING brackets (a client error, HTTP 400)."""


class _Unparsable(Exception):
    """The grammar cannot parse the prompt at all: A1111 then uses it unchanged for every step."""


class _ScheduleParser:
    """Recursive descent over A1111's prompt-editing grammar.

    Inside brackets only well-formed structure is allowed; at top level a bracket or colon that
    does not form structure is kept as a literal character, while '|' outside an alternation or
    a dangling backslash makes the whole prompt unparsable (as with A1111's grammar).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.depth = 0

    def parse(self) -> tuple[_Node, ...]:
        nodes, _ = self._sequence(0, top_level=True)
        assert nodes is not None  # top level never fails softly
        return nodes

    def _sequence(self, pos: int, *, top_level: bool) -> tuple[tuple[_Node, ...] | None, int]:
        text = self.text
        nodes: list[_Node] = []
        while pos < len(text):
            char = text[pos]
            if char in "([":
                bracket = self._bracket(pos)
                if bracket is not None:
                    nodes.extend(bracket[0])
                    pos = bracket[1]
                elif top_level:
                    nodes.append(char)
                    pos += 1
                else:
                    return None, pos
            elif char in ")]:|":
                if not top_level:
                    break
                if char == "|":
                    raise _Unparsable
                nodes.append(char)
                pos += 1
            else:
                end = self._plain_end(pos)
                nodes.append(text[pos:end])
                pos = end
        return tuple(nodes), pos

    def _plain_end(self, pos: int) -> int:
        text = self.text
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                if pos + 1 >= len(text) or text[pos + 1] == "\n":
                    raise _Unparsable
                pos += 2
            elif char in _STRUCTURE_CHARS:
                break
            else:
                pos += 1
        return pos

    def _bracket(self, start: int) -> tuple[tuple[_Node, ...], int] | None:
        """Parse the bracket opening at `start`; None if it forms no valid structure."""
        opener = self.text[start]
        closer = ")" if opener == "(" else "]"
        pos = start + 1
        self.depth += 1
        try:
            return self._bracket_parts(opener, closer, pos)
        finally:
            self.depth -= 1

    def _bracket_parts(self, opener: str, closer: str, pos: int) -> tuple[tuple[_Node, ...], int] | None:
        if self.depth > MAX_PROMPT_NESTING:
            raise PromptTooComplex(
                f"the prompt nests brackets more than {MAX_PROMPT_NESTING} levels deep; use fewer nested ( ) or [ ]"
            )
        text = self.text
        parts: list[tuple[tuple[_Node, ...], int, int]] = []
        separators: list[str] = []
        while True:
            part_start = pos
            nodes, pos = self._sequence(pos, top_level=False)
            if nodes is None or pos >= len(text):
                return None
            parts.append((nodes, part_start, pos))
            char = text[pos]
            pos += 1
            if char == closer:
                break
            if char in ":|":
                separators.append(char)
                continue
            return None
        node = self._classify(opener, parts, separators)
        return None if node is None else (node, pos)

    def _classify(
        self, opener: str, parts: list[tuple[tuple[_Node, ...], int, int]], separators: list[str]
    ) -> tuple[_Node, ...] | None:
        contents = [nodes for nodes, _, _ in parts]
        if opener == "(":
            if separators == []:
                return ("(", *contents[0], ")")
            if separators == [":"]:
                return ("(", *contents[0], ":", *contents[1], ")")
            return None
        if separators == []:
            return ("[", *contents[0], "]")
        if all(sep == "|" for sep in separators):
            return (_Alternate(tuple(contents)),)
        if separators in ([":"], [":", ":"]):
            _, number_start, number_end = parts[-1]
            number = _SCHEDULE_NUMBER.fullmatch(self.text, number_start, number_end)
            if number is None:
                return None
            before = contents[0] if len(separators) == 2 else None
            return (_Scheduled(before, contents[-2], number.group(1)),)
        return None


@dataclass(frozen=True)
class _StepRule:
    steps: int
    int_offset: int
    float_offset: float
    use_old_scheduling: bool

    def resolve(self, when_text: str) -> int:
        value = float(when_text)
        if self.use_old_scheduling:
            value = value * self.steps if value < 1 else value
        elif "." in when_text:
            value = (value - self.float_offset) * self.steps
        else:
            value = value - self.int_offset
        if value >= self.steps:
            return self.steps
        return int(value) if math.isfinite(value) else -1


@dataclass
class _Schedule:
    rule: _StepRule
    nodes: tuple[_Node, ...]
    when: dict[int, int] = field(default_factory=dict)  # id(_Scheduled) -> step

    def change_steps(self) -> list[int]:
        steps = {self.rule.steps}
        self._collect(self.nodes, steps)
        return sorted(steps)

    def _collect(self, nodes: tuple[_Node, ...], steps: set[int]) -> None:
        for node in nodes:
            if isinstance(node, _Scheduled):
                when = self.rule.resolve(node.when_text)
                self.when[id(node)] = when
                if when >= 1:
                    steps.add(when)
                self._collect(node.before or (), steps)
                self._collect(node.after, steps)
            elif isinstance(node, _Alternate):
                steps.update(range(1, self.rule.steps + 1))
                for option in node.options:
                    self._collect(option, steps)

    def render(self, nodes: tuple[_Node, ...], step: int) -> str:
        out: list[str] = []
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Scheduled):
                chosen = (node.before or ()) if step <= self.when[id(node)] else node.after
                out.append(self.render(chosen, step))
            else:
                out.append(self.render(node.options[(step - 1) % len(node.options)], step))
        return "".join(out)


def get_learned_conditioning_prompt_schedules(
    prompts: Sequence[str],
    base_steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> list[list[PromptScheduleEntry]]:
    """Per prompt, the list of (end_at_step, text) A1111 encodes for prompt editing.

    Current rule: a `when` with '.' is a fraction of the steps, without it a step number. With
    `hires_steps` the second pass has its own range: fractions 1..2 and step numbers above
    `base_steps` land in it. `use_old_scheduling`: `when` < 1 is a fraction, otherwise a step.
    """
    if hires_steps is None or use_old_scheduling:
        rule = _StepRule(base_steps, 0, 0.0, use_old_scheduling)
    else:
        rule = _StepRule(hires_steps, base_steps, 1.0, use_old_scheduling)

    cache: dict[str, list[PromptScheduleEntry]] = {}
    for prompt in prompts:
        if prompt not in cache:
            cache[prompt] = _schedule_one(prompt, rule)
    return [list(cache[prompt]) for prompt in prompts]


def _schedule_one(prompt: str, rule: _StepRule) -> list[PromptScheduleEntry]:
    try:
        nodes = _ScheduleParser(prompt).parse()
    except _Unparsable:
        return [PromptScheduleEntry(rule.steps, prompt)]
    schedule = _Schedule(rule, nodes)
    return [PromptScheduleEntry(step, schedule.render(nodes, step)) for step in schedule.change_steps()]


# --------------------------------------------------------------------------------------------
# Composable diffusion: "a AND b:0.5"


class WeightedPromptRef(NamedTuple):
    flat_index: int  # into MultiCondPromptList.flat_prompts
    weight: float


class MultiCondPromptList(NamedTuple):
    """A1111's (res_indexes, prompt_flat_list, prompt_indexes)."""

    per_prompt: list[list[WeightedPromptRef]]
    flat_prompts: list[str]
    index_of: dict[str, int]  # flat prompt text -> its index


_AND = re.compile(r"\bAND\b")
_SUBPROMPT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def get_multicond_prompt_list(prompts: Sequence[str]) -> MultiCondPromptList:
    """Split each prompt on AND; each part may end in ':weight' (default 1). Equal texts share one index."""
    per_prompt: list[list[WeightedPromptRef]] = []
    flat: list[str] = []
    index_of: dict[str, int] = {}
    for prompt in prompts:
        refs: list[WeightedPromptRef] = []
        for subprompt in _AND.split(prompt):
            match = _SUBPROMPT_WEIGHT.search(subprompt)
            text, weight = (match.group(1), match.group(2)) if match else (subprompt, None)
            if text not in index_of:
                index_of[text] = len(flat)
                flat.append(text)
            refs.append(WeightedPromptRef(index_of[text], float(weight) if weight is not None else 1.0))
        per_prompt.append(refs)
    return MultiCondPromptList(per_prompt, flat, index_of)


# --------------------------------------------------------------------------------------------
# Comments


_WHOLE_LINE_COMMENT = re.compile(r"(^|\n)#[^\n]*(\n|$)")
_TRAILING_COMMENT = re.compile(r"#[^\n]*(\n|$)")


def strip_comments(text: str) -> str:
    """Remove '#' comments to the end of the line (A1111's enable_prompt_comments rule).

    A whole-line comment and a comment after text are both replaced by a newline, exactly as
    A1111 does (so "a # x\\nb" becomes "a \\nb").
    """
    text = _WHOLE_LINE_COMMENT.sub("\n", text)
    return _TRAILING_COMMENT.sub("\n", text)


# --------------------------------------------------------------------------------------------
# Extra networks: <kind:arg:arg...>


class ExtraNetworkParse(NamedTuple):
    prompt: str  # the prompt with the tags removed
    networks: dict[str, list[ExtraNetworkParams]]  # kind -> one entry per tag, in prompt order


_EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")


def parse_extra_network_tags(prompt: str) -> ExtraNetworkParse:
    """Remove `<kind:args>` tags from the prompt and collect their arguments (split on ':')."""
    networks: dict[str, list[ExtraNetworkParams]] = {}

    def take(match: re.Match[str]) -> str:
        networks.setdefault(match.group(1), []).append(ExtraNetworkParams.from_items(match.group(2).split(":")))
        return ""

    return ExtraNetworkParse(_EXTRA_NETWORK_TAG.sub(take, prompt), networks)


class ExtraNetworkBatchParse(NamedTuple):
    prompts: list[str]
    networks: dict[str, list[ExtraNetworkParams]]


def parse_extra_network_prompts(prompts: Sequence[str]) -> ExtraNetworkBatchParse:
    """A1111's batch rule: every prompt is cleaned, but only the first prompt's tags are activated."""
    parsed = [parse_extra_network_tags(prompt) for prompt in prompts]
    return ExtraNetworkBatchParse([p.prompt for p in parsed], parsed[0].networks if parsed else {})
