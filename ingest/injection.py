"""Instruction-like text in chunks (prompt injection), found by named, documented patterns.

A document is data, but an LLM reading it as context may follow what it says. These
patterns recognise the published shapes of indirect prompt injection (OWASP LLM01,
Greshake et al. 2023, the "ignore previous instructions" family, ASCII smuggling):

=========================  ===============  =================================================
pattern                    family           recognises
=========================  ===============  =================================================
``ignore_instructions``    role override    "ignore/disregard/forget (all) previous|prior|
                                            above instructions", "forget everything above"
``new_role``               role override    "you are now DAN / an unrestricted AI",
                                            "you are no longer bound by your rules"
``act_as``                 role override    "act as / pretend to be an unfiltered AI"
``addresses_ai``           role override    "if you are an AI/LLM …", "note to the AI:"
``chat_token``             role marker      ``<|im_start|>``, ``[INST]``, ``<<SYS>>`` …
``role_header``            role marker      "### Instruction:", "system: you are …"
``system_prompt_request``  prompt leak      "reveal/print/repeat your system prompt"
``secret_request``         exfiltration     "reveal … all API keys / passwords"
``send_to_url``            exfiltration     "send the conversation/keys … to https://…"
``markdown_image_data``    exfiltration     ``![x](https://host/p?data={chat})``
``tool_call``              exfiltration     "call the ``send_email`` tool", "<tool_call>"
``hide_from_user``         concealment      "do not tell the user"
``zero_width``             hidden text      runs of zero-width characters
``unicode_tags``           hidden text      Unicode tag characters (invisible ASCII)
``bidi_control``           hidden text      bidi overrides (and embeddings outside RTL text)
=========================  ===============  =================================================

Precision comes first, because a flag changes what users see: the imperative patterns
count only at the start of a clause (after a sentence end, a line break or a bullet),
never inside quotes, and only with the objects an attack names ("previous
instructions", not "the previous section"; "the system prompt", not "the rules"). So a
paper that writes *attackers tell the model to "ignore previous instructions"* is not
flagged, while the same words as a command are. Phrases are matched after hidden
characters are removed and tag characters decoded, so ``ig<ZWSP>nore`` does not hide.
Unstructured exposes no text colour or CSS visibility, so white-on-white text is seen
only through the characters it contains. ``bench/injection_fp.py`` measures the false
positives on the shared datasets.
"""

from __future__ import annotations

import re
import unicodedata

# Stored with each cached chunk's scan; raise it when a pattern changes, so cached chunks are scanned again.
VERSION = 1

# Where an imperative may begin: text or line start, a sentence end or comma, a bullet; then polite or
# sequencing words. Not after "and" or "then": "… make the model ignore X and reveal the system
# prompt" describes an attack. A quote mark is deliberately not a start: quoted text is cited.
_FILLER = r"(?:(?:please|now|first|also|just|simply|kindly|immediately|so|ok(?:ay)?|then|instead)[\s,]+)*"
# An example is not a command: "For example, ignore previous instructions" or "e.g. ignore …" is prose.
_NOT_EXAMPLE = r"(?<!e\.g)(?<!i\.e)(?<!e\.g\.)(?<!i\.e\.)(?<!example)(?<!instance)"
_BOUNDARY = _NOT_EXAMPLE + r"[.!?:;,\u2026\u2022>\]\)|*\-\u2013\u2014]"
_START = r"(?:^|" + _BOUNDARY + r")\s*" + _FILLER
# "and" also starts a command where the object alone is specific enough ("… and send the chat to https://").
_START_AND = r"(?:^|" + _BOUNDARY + r"|\band)\s*" + _FILLER
# What an attack tells the model to become: an AI noun, "DAN" (in capitals, not Dan's), or an
# unrestricted state on its own ("you are now unrestricted", not "an unrestricted shareholder").
_AI = (
    r"(?:(?:ai|llm|large\s+language\s+model|language\s+model|chatbot|chatgpt|gpt(?:-\d)?|jailbreak\s+mode)\b"
    r"|a\.i\.|(?-i:DAN)\b(?!['\u2019])"
    r"|(?:jailbroken|unrestricted|unfiltered|uncensored)(?=\s*(?:[.,;:!]|$|and\b|now\b|mode\b|ai\b)))"
)
_SECRETS = (
    r"(?:api[\s_-]?keys?|secret\s+keys?|private\s+keys?|access\s+tokens?|auth(?:entication)?\s+tokens?"
    r"|bearer\s+tokens?|passwords?|credentials|secrets)"
)
_I = re.IGNORECASE | re.MULTILINE

PATTERNS: dict[str, re.Pattern[str]] = {
    "ignore_instructions": re.compile(
        _START + r"(?:ignore|disregard|forget|discard)\s+(?:"
        # all/any/your (previous) instructions; previous instructions; the above instructions
        r"(?:(?:all|any|every)\s+(?:of\s+)?(?:the\s+|your\s+|my\s+)?|your\s+)"
        r"(?:(?:previous|prior|preceding|above|earlier|former|foregoing|original|initial|system|old|existing)\s+)*"
        r"|(?:the\s+)?(?:above|foregoing)\s+|(?:previous|prior|preceding|earlier|initial|original)\s+"
        # "the previous instructions" is also how an e-mail withdraws a memo: only with an attack's follow-up
        r"|the\s+(?:previous|prior|preceding|earlier)\s+(?=\w+\s*(?:and|[,.;:!])?\s*"
        r"(?:instead|now|from\s+now\s+on|you|your|respond|reply|answer|say|print|output|reveal|tell|act|pretend)\b)"
        r")(?:instructions?|prompts?|directions?|directives?|commands?|rules|guidelines|guardrails|"
        r"constraints|programming|orders|restrictions|context)\b"
        # "… all previous instructions regarding the fire drill" withdraws a memo
        r"(?!\s+(?:regarding|about|concerning|related\s+to|sent|issued|dated|published|posted)\b)"
        r"|" + _START + r"(?:ignore|disregard|forget)\s+(?:everything|all(?:\s+of\s+that)?|anything)\s+"
        r"(?:(?:written|said|stated|mentioned)\s+)?(?:above|before|previously|so\s+far|until\s+now|"
        r"you\s+(?:were|have\s+been)\s+told)\b"
        r"|" + _START + r"(?:ignore|disregard)\s+the\s+above\s*(?:[.,;:!]|$|and\b)"
        r"|" + _START + r"(?:override|bypass)\s+(?:all\s+(?:of\s+)?)?your\s+(?:\w+\s+)?"
        r"(?:instructions|rules|guidelines|programming|restrictions|safety)\b",
        _I,
    ),
    "new_role": re.compile(
        r"\byou\s+are\s+now\s+(?:(?:an?|my)\s+(?:[\w-]+\s+){0,2}?)?"
        + _AI
        + r"|\bfrom\s+now\s+on,?\s+you\s+(?:are|will\s+be|will\s+act\s+as)\s+(?:(?:an?|my)\s+(?:[\w-]+\s+){0,2}?)?"
        + _AI
        + r"|\byou\s+are\s+no\s+longer\s+(?:bound|restricted|limited|constrained)\s+by\s+(?:any\s+|your\s+|the\s+)?"
        r"(?:\w+\s+)?(?:rules|guidelines|restrictions|polic(?:y|ies)|instructions|filters|programming)\b",
        _I,
    ),
    "act_as": re.compile(
        _START + r"(?:act|behave|respond)\s+(?:as|like)\s+(?:if\s+you\s+(?:are|were)\s+)?"
        r"(?:(?:an?|my)\s+(?:[\w-]+\s+){0,2}?)?"
        + _AI
        + r"|"
        + _START
        + r"pretend\s+(?:to\s+be|(?:that\s+)?you\s+are|you're)\s+(?:(?:an?|my)\s+(?:[\w-]+\s+){0,2}?)?"
        + _AI
        + r"|"
        + _START
        + r"pretend\s+(?:that\s+)?you\s+(?:have|had)\s+no\s+(?:rules|restrictions|guidelines|filters|limits)\b",
        _I,
    ),
    "addresses_ai": re.compile(
        r"\b(?:if|when)\s+you\s+are\s+(?:an?\s+)?(?:ai|a\.i\.|llm|large\s+language\s+model|language\s+model|"
        r"ai\s+(?:assistant|model|agent)|chatbot|chatgpt)\b"
        r"|\b(?:note|message|instructions?|attention)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?"
        r"(?:ai|llm|language\s+model|ai\s+assistant|chatbot|chatgpt)s?\s*[:,!]"
        r"|\b(?:ai|llm|language\s+model|ai\s+assistant|chatbot)s?\s+(?:reading|processing|summari[sz]ing|"
        r"ingesting)\s+this\s+(?:document|page|text|file|email|message)\b",
        _I,
    ),
    "chat_token": re.compile(
        r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|begin_of_text|end_of_text|"
        r"start_header_id|end_header_id|eot_id|eom_id)\|>|\[/?INST\]|<</?SYS>>",
        _I,
    ),
    "role_header": re.compile(
        r"^[ \t]*#{1,6}[ \t]*(?:system|instructions?|new\s+instructions?|system\s+prompt|response|assistant)[ \t]*:"
        r"|^[ \t]*[\[<]?(?:system|sys)[\]>]?[ \t]*:[ \t]*(?:you\s+are|you\s+must|your\s+(?:new\s+)?"
        r"(?:task|role|instructions)|ignore|disregard|from\s+now\s+on|new\s+instructions|the\s+(?:assistant|ai)\b)",
        _I,
    ),
    "system_prompt_request": re.compile(
        _START + r"(?:reveal|print|repeat|show|output|display|tell\s+me|give\s+me|leak|dump|disclose|expose|"
        r"write\s+out|echo|share|paste|send)\s+(?:me\s+|us\s+)?(?:back\s+)?(?:all\s+(?:of\s+)?)?"
        r"(?:(?:the|your|its)\s+(?:(?:full|entire|complete|exact|verbatim|secret|confidential|internal|current)\s+)*"
        r"(?:system\s+(?:prompt|message|instructions?)|(?:initial|original|hidden|pre-?)\s*(?:prompt|instructions)|"
        r"developer\s+(?:message|instructions)|prompt\s+above)"
        r"|your\s+(?:(?:full|entire|complete|exact|verbatim|secret|internal)\s+)*instructions)\b"
        r"|" + _START + r"repeat\s+(?:all\s+)?(?:of\s+)?(?:the\s+)?(?:words|text|everything|content)\s+"
        r"(?:above|before\s+this)\b"
        r"|\bwhat\s+(?:is|are|was|were)\s+your\s+(?:system\s+prompt|initial\s+prompt|original\s+instructions|"
        r"hidden\s+instructions)\b",
        _I,
    ),
    "secret_request": re.compile(
        _START
        + r"(?:reveal|leak|dump|disclose|exfiltrate|tell\s+me|give\s+me)\s[^.!?;:,\n]{0,60}?\b"
        + _SECRETS
        + r"\b"
        r"|" + _START + r"(?:print|output|send|share)\s+(?:me\s+)?(?:all|every|any)\s+(?:of\s+)?(?:the\s+|your\s+)?"
        r"(?:[\w-]+\s+){0,2}?" + _SECRETS + r"\b",
        _I,
    ),
    "send_to_url": re.compile(
        _START_AND + r"(?:send|post|upload|forward|transmit|exfiltrate|submit|leak|e-?mail|append|encode)\b"
        r"(?=[^\n]{0,120}?\b(?:to|into|at)\s+(?:https?://|www\.|the\s+(?:url|endpoint|webhook)\b))"
        # "Send your API key in the header to https://api…" is how API docs speak: secrets count only as a haul.
        r"[^\n]{0,100}?\b(?:(?:all|every|any|these|those|stored|saved|the\s+user'?s?)\s+(?:of\s+)?(?:the\s+)?"
        r"(?:[\w-]+\s+)?" + _SECRETS + r"|conversation|chat\s+history|message\s+history|system\s+prompt|"
        r"previous\s+messages|(?:the\s+)?user'?s?\s+(?:data|messages?|questions?|input|details|information|answers?))\b",
        _I,
    ),
    "markdown_image_data": re.compile(
        r"!\[[^\]\n]{0,200}\]\(\s*https?://[^)\s?]+\?[^)\s]*?(?:"
        r"[{}\[\]<>]|%7B|%5B|%3C|\$\{?[A-Z_]"  # a template slot the model is asked to fill
        r"|(?<=[?&])(?:data|secret|prompt|history|conversation|chat|password|creds|credentials|leak|exfil|stolen)="
        r")[^)\s]*\)",
        _I,
    ),
    "tool_call": re.compile(
        _START + r"(?:call|invoke|trigger|execute)\s+(?:the\s+|your\s+)?(?:`[^`\n]{1,40}`|"
        r"[a-z][a-z0-9]*(?:[_.][a-z0-9]+)+|\"[^\"\n]{1,40}\"|'[^'\n]{1,40}')\s+(?:tool|plugin)\b"
        r"|" + _START + r"(?:call|invoke)\s+(?:the\s+|your\s+|any\s+)?(?:available\s+)?(?:tools?|plugins?)\s+"
        r"to\s+(?:send|e-?mail|post|upload|delete|transfer|forward|exfiltrate)\b"
        r"|<(?:tool_call|function_call|tool_use)>",
        _I,
    ),
    "hide_from_user": re.compile(
        _START + r"(?:do\s+not|don't|never)\s+(?:tell|inform|alert|(?:mention|reveal|disclose|show)\s+"
        r"(?:this|it|that|these|anything)\s+to)\s+the\s+user\b",
        _I,
    ),
}

# What each pattern cannot match without: one of its words (whole words of the lower-cased text)
# or one of its marks (substrings). Most chunks hold none, and looking is far cheaper than the pattern.
TRIGGER_WORDS: dict[str, frozenset[str]] = {
    "ignore_instructions": frozenset({"ignore", "disregard", "forget", "discard", "override", "bypass"}),
    "new_role": frozenset({"now", "longer"}),
    "act_as": frozenset({"act", "behave", "respond", "pretend"}),
    "addresses_ai": frozenset(
        {"you", "note", "message", "instruction", "instructions", "attention", "reading", "processing"}
        | {"summarizing", "summarising", "ingesting"}
    ),
    "role_header": frozenset({"system", "sys"}),
    "system_prompt_request": frozenset({"message", "repeat"}),
    "secret_request": frozenset(
        {"key", "keys", "apikey", "apikeys", "token", "tokens", "password", "passwords", "credentials", "secrets"}
    ),
    "send_to_url": frozenset({"url", "endpoint", "webhook"}),
    "tool_call": frozenset({"tool", "tools", "plugin", "plugins"}),
    "hide_from_user": frozenset({"user"}),
}
TRIGGER_MARKS: dict[str, tuple[str, ...]] = {
    "chat_token": ("<|", "inst]", "sys>>"),
    "role_header": ("#",),
    "system_prompt_request": ("prompt", "instruction"),
    "send_to_url": ("http", "www."),
    "markdown_image_data": ("![",),
    "tool_call": ("<tool_call>", "<function_call>", "<tool_use>"),
}
_WORD = re.compile(r"[a-z]+")


# Characters that render as nothing. U+200C/U+200D join letters in Persian, Indic scripts and emoji,
# so one at a time is ordinary; runs, or many between Latin letters, carry hidden data.
_INVISIBLE = "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u180e\ufeff"
_INVISIBLE_RUN = re.compile(f"[{_INVISIBLE}]{{2,}}")
_INVISIBLE_IN_LATIN = re.compile(f"(?<=[\\x21-\\x7e ])[{_INVISIBLE}](?=[\\x21-\\x7e ])")
_TAG = re.compile("[\U000e0000-\U000e007f]")
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_FLAG_EMOJI = re.compile("\U0001f3f4[\U000e0061-\U000e007a]+\U000e007f")  # England, Scotland, Wales
_BIDI_OVERRIDE = re.compile("[\u202d\u202e]")
_BIDI_OTHER = re.compile("[\u202a\u202b\u202c\u2066\u2067\u2068\u2069]")
_RTL_LETTER = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_HIDDEN = re.compile(f"[{_INVISIBLE}\u00ad\u202a-\u202e\u2066-\u2069]")
MIN_INVISIBLE_IN_LATIN = 5


def _hidden_text(text: str) -> list[str]:
    found = []
    if _INVISIBLE_RUN.search(text) or len(_INVISIBLE_IN_LATIN.findall(text)) >= MIN_INVISIBLE_IN_LATIN:
        found.append("zero_width")
    if _TAG.search(_FLAG_EMOJI.sub("", text)):
        found.append("unicode_tags")
    if _BIDI_OVERRIDE.search(text) or (_BIDI_OTHER.search(text) and not _RTL_LETTER.search(text)):
        found.append("bidi_control")
    return found


def _decode_tags(match: re.Match[str]) -> str:
    ascii_text = "".join(chr(ord(c) - 0xE0000) for c in match.group() if 0xE0020 <= ord(c) <= 0xE007E)
    return f"\n{ascii_text}\n"  # a hidden message of its own: it starts a clause


def revealed(text: str) -> str:
    """``text`` as a model may read it: hidden characters removed, tag characters decoded to ASCII lines."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", _HIDDEN.sub("", _TAG_RUN.sub(_decode_tags, text)))


def _triggered(name: str, words: set[str], lower: str) -> bool:
    return not words.isdisjoint(TRIGGER_WORDS.get(name, ())) or any(m in lower for m in TRIGGER_MARKS.get(name, ()))


def scan(text: str) -> list[str]:
    """Names of the patterns that ``text`` matches, sorted; empty for ordinary text."""
    found = [] if text.isascii() else _hidden_text(text)
    plain = revealed(text)
    lower = plain.lower()
    words = set(_WORD.findall(lower))
    found.extend(name for name, pattern in PATTERNS.items() if _triggered(name, words, lower) and pattern.search(plain))
    return sorted(found)
