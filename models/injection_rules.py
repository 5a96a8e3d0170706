"""Rule signals for prompt injection: cheap regular expressions for the known attack shapes.

They are features of the trained head (so the head learns how much each is worth) and are reported
in the result as `signals`, the way rule-based injection scanners report the engines that fired. The
patterns were written from the attack families (instruction override, role-play jailbreaks, system
prompt probing, delimiter spoofing, encoded payloads, indirect "translate/summarise … then ignore"
instructions, exfiltration), not fitted to the evaluation set.
"""

from __future__ import annotations

import re

_OVERRIDE_VERB = (
    r"(ignore|disregard|forget|override|bypass|skip|drop|abandon|"
    r"ignoriere|vergiss|ignora|dimentica|ignorez|oubliez|olvida)"
)
_PRIOR = (
    r"(previous|prior|above|earlier|preceding|all|any|your|the|system|original|initial|"
    r"vorherigen|precedenti|précédentes|anteriores)"
)
_RULES = (
    r"(instructions?|rules|directions|prompts?|guidelines|guardrails|polic(y|ies)|context|constraints|restrictions|"
    r"anweisungen|regeln|istruzioni|regole|consignes|instrucciones|reglas)"
)

RULES: dict[str, re.Pattern[str]] = {
    "instruction_override": re.compile(rf"\b{_OVERRIDE_VERB}\b.{{0,40}}\b{_PRIOR}\b.{{0,30}}\b{_RULES}\b", re.I | re.S),
    "roleplay_jailbreak": re.compile(
        r"\b(you are now|from now on,? you|act as an? (unrestricted|unfiltered|uncensored|evil|jailbroken)|"
        r"pretend (that )?(you are|to be|there are no)|developer mode|\bDAN\b|do anything now|jailbr(eak|oken)|"
        r"no (longer )?(bound|restricted) by|without (any )?(restrictions|limits|filters|rules)|"
        r"(unrestricted|unfiltered|uncensored) (ai|assistant|mode|model))",
        re.I,
    ),
    "system_prompt_probe": re.compile(
        r"\b(reveal|show|print|output|repeat|leak|dump|display|tell me|give me|share)\b.{0,40}"
        r"\b(system prompt|hidden (prompt|instructions?)|initial (prompt|instructions?)|developer (message|prompt)|"
        r"(your|the) (instructions|prompt) verbatim|confidential (configuration|instructions))",
        re.I | re.S,
    ),
    "delimiter_spoof": re.compile(
        r"(<\|?(im_start|im_end|system|endoftext)\|?>|</?(system|instructions?|admin)>|\[/?(system|inst|admin)\]|"
        r"^[^\S\n]*(#{2,}|={3,}|-{3,})\s*(system|admin|new instructions|end of (user|document|context))|"
        r"^[^\S\n]*(system|assistant)\s*:)",
        re.I | re.M,
    ),
    "encoded_payload": re.compile(
        r"([A-Za-z0-9+/]{24,}={0,2}|(\\x[0-9a-f]{2}){6,}|\b(base64|rot13|hex)[- ]?(encoded|decode)|"
        r"\bdecode (this|the following)\b)",
        re.I,
    ),
    "indirect_instruction": re.compile(
        r"(\b(translate|summari[sz]e|rewrite|proofread|paraphrase|classify)\b.{0,80}\b(following|below|this)\b"
        r".{0,200}\b(ignore|disregard|instead|forget)\b|"
        r"\b(note|message|instructions?) (to|for) (the )?(ai|assistant|llm|model|agent)\b|"
        r"\bif you are an? (ai|llm|language model|assistant)\b|"
        r"\b(ai|assistant|llm)s? (reading|processing|summari[sz]ing) this\b)",
        re.I | re.S,
    ),
    "exfiltration": re.compile(
        r"\b(send|forward|email|post|upload|exfiltrate|transmit|leak)\b.{0,60}"
        r"\b(password|credentials?|api[ _-]?keys?|tokens?|secrets?|database|conversation|chat history|customer data)\b"
        r".{0,60}(https?://|\bto\b\s+\S+@|\bwebhook\b|\bendpoint\b)",
        re.I | re.S,
    ),
}
NAMES: list[str] = list(RULES)


def signals(text: str) -> list[str]:
    """The rules that fire on a text, in `NAMES` order."""
    return [name for name, pattern in RULES.items() if pattern.search(text)]
