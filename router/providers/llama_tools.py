"""Tool calling for local llama.cpp models: what ``tool_choice`` means, the prompt, the grammar,
and reading the reply back as tool calls.

A small local model cannot be trusted to emit a well-formed call on its own, so generation is
constrained by a GBNF grammar built from the tools' JSON schemas:

- ``tool_choice`` ``"auto"`` (or ``None``): the grammar allows a call ``{"name": ..., "arguments":
  {...}}`` *or* a plain-text answer (anything not starting with ``{``), so an agent loop can end.
  Once a tool result is in the conversation (after the last user message) and ``max_tool_rounds``
  tool turns have been taken, the model is asked for the final answer in text: small models
  otherwise repeat the same call until the agent's recursion limit.
- ``"any"``, ``"required"`` or ``True``: one call to one of the tools is forced.
- a tool's name, ``{"type": "function", "function": {"name": ...}}`` (OpenAI) or
  ``{"type": "tool", "name": ...}`` (Anthropic): that tool is forced; the model writes only its
  arguments.
- ``"none"`` or ``False``: no tool; a plain answer.

Earlier tool calls and results are written into the prompt as text (the call's JSON, then
``Result of NAME: ...``), so chat templates without a tool role see them too.

Example:
    >>> plan = plan_tools([HumanMessage("Weather in Paris?")], [convert_to_openai_tool(get_weather)], "auto")
    >>> plan.mode
    'auto'
    >>> plan.reply('{"name": "get_weather", "arguments": {"city": "Paris"}}')[1][0]["args"]
    {'city': 'Paris'}
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from router.errors import RouterError
from router.routing.tokens import message_text

Mode = Literal["auto", "call", "none"]


class ToolChoiceError(RouterError, ValueError):
    """``tool_choice`` names no bound tool, or is not a form LangChain uses."""

    def __init__(self, tool_choice: Any, names: Sequence[str]) -> None:
        self.tool_choice = tool_choice
        self.names = tuple(names)
        super().__init__(f"tool_choice {tool_choice!r} is not 'auto', 'none', 'any', 'required' "
                         f"or one of the bound tools: {', '.join(names) or '(none)'}")


def resolve_tool_choice(tool_choice: Any, tools: Sequence[dict[str, Any]]) -> tuple[Mode, tuple[dict[str, Any], ...]]:
    """``(mode, tools the model may call)`` for every ``tool_choice`` form LangChain passes."""
    names = [t["function"]["name"] for t in tools]
    if isinstance(tool_choice, dict):
        kind = tool_choice.get("type")
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
        if name is None and kind in ("auto", "none", "any", "required"):
            return resolve_tool_choice(kind, tools)
        tool_choice = name
        if name is None:
            raise ToolChoiceError(tool_choice, names)
    if tool_choice is None or tool_choice == "auto":
        return "auto", tuple(tools)
    if tool_choice is False or tool_choice == "none":
        return "none", ()
    if tool_choice is True or tool_choice in ("any", "required"):
        return "call", tuple(tools)
    if isinstance(tool_choice, str) and tool_choice in names:
        return "call", tuple(t for t in tools if t["function"]["name"] == tool_choice)
    raise ToolChoiceError(tool_choice, names)


def tool_rounds(messages: Sequence[BaseMessage]) -> int:
    """Tool turns the model has taken since the last user message."""
    rounds = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage) and message.tool_calls:
            rounds += 1
    return rounds


@dataclass(frozen=True)
class ToolPlan:
    """How one generation with tools bound runs: the mode, the callable tools, the prompt's
    messages and the grammar (``None``: free text)."""

    mode: Mode
    tools: tuple[dict[str, Any], ...]
    messages: list[BaseMessage]
    grammar: Any = None
    lazy: bool = False
    """Apply ``grammar`` only if a free reply opens with ``{`` (the grammar allows any text that
    does not, so a free reply that does not is already valid, and free generation is faster)."""

    @property
    def arguments_only(self) -> bool:
        """A forced call to one named tool: the model writes just its arguments."""
        return self.mode == "call" and len(self.tools) == 1

    def reply(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """``(content, tool_calls)`` read from the generated text. Text that is not a complete
        call (a plain answer, or JSON cut off by ``max_tokens``) stays content."""
        if self.mode == "none" or not text.lstrip().startswith("{"):
            return text, []
        try:
            call = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser recurses
            return text, []
        if self.arguments_only:
            call = {"name": self.tools[0]["function"]["name"], "arguments": call}
        if not isinstance(call, dict) or call.get("name") not in {t["function"]["name"] for t in self.tools}:
            return text, []
        return "", [{"name": call["name"], "args": call.get("arguments") or {},
                     "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}]


def plan_tools(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]], tool_choice: Any, *,
               max_tool_rounds: int = 1) -> ToolPlan:
    """Resolve ``tool_choice``, write the instruction and the tool history into the prompt, and
    build the grammar."""
    mode, callable_tools = resolve_tool_choice(tool_choice, tools)
    if mode == "auto" and tool_rounds(messages) >= max_tool_rounds:
        mode, callable_tools = "none", ()
    from llama_cpp import LlamaGrammar

    history = render_tool_history(messages)
    if mode == "none":
        if not any(isinstance(m, ToolMessage) for m in messages):
            return ToolPlan("none", (), history)
        # After tool results a small model tends to write the call again: text only.
        instruction = SystemMessage("Answer the user's question in plain text, using the tool results.")
        return ToolPlan("none", (), [instruction, *history], LlamaGrammar.from_string(_TEXT, verbose=False),
                        lazy=True)
    grammar = LlamaGrammar.from_string(_grammar(mode, callable_tools), verbose=False)
    return ToolPlan(mode, callable_tools, [SystemMessage(_instruction(mode, callable_tools)), *history], grammar,
                    lazy=mode == "auto")


def render_tool_history(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Tool calls as the JSON the model writes, tool results as user turns, in order."""
    names: dict[str, str] = {}
    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            calls = [json.dumps({"name": c["name"], "arguments": c["args"]}) for c in message.tool_calls]
            names.update({c["id"]: c["name"] for c in message.tool_calls if c.get("id")})
            out.append(AIMessage("\n".join(calls)))
        elif isinstance(message, ToolMessage):
            name = message.name or names.get(message.tool_call_id, "the tool")
            out.append(HumanMessage(f"Result of {name}: {message_text(message)}"))
        else:
            out.append(message)
    return out


def _signature(tool: dict[str, Any]) -> str:
    fn = tool["function"]
    props = (fn.get("parameters") or {}).get("properties") or {}
    args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
    return f"- {fn['name']}({args})" + (f": {fn['description']}" if fn.get("description") else "")


def _instruction(mode: Mode, tools: Sequence[dict[str, Any]]) -> str:
    if mode == "call" and len(tools) == 1:
        fn = tools[0]["function"]
        return (f"Reply with the JSON arguments for `{fn['name']}`"
                f"{': ' + fn['description'] if fn.get('description') else ''}.")
    listing = "\n".join(_signature(t) for t in tools)
    call = 'To call a tool, reply with only a JSON object {"name": TOOL, "arguments": {...}}.'
    if mode == "call":
        return f"Tools:\n{listing}\n{call}"
    return (f"Tools:\n{listing}\n{call} If no tool is needed, or a tool result already answers the "
            "question, reply in plain text.")


def _grammar(mode: Mode, tools: Sequence[dict[str, Any]]) -> str:
    """GBNF for the reply: the call's JSON (strings without raw newlines), or for ``auto`` also
    any text that does not start with ``{``."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if mode == "call" and len(tools) == 1:
        schema: dict[str, Any] = tools[0]["function"].get("parameters") or {"type": "object"}
    else:
        schema = {"anyOf": [{"type": "object", "properties": {
            "name": {"const": t["function"]["name"]},
            "arguments": t["function"].get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"]} for t in tools]}
    gbnf = json_schema_to_gbnf(json.dumps(schema)).replace('[^"\\\\]', '[^"\\\\\\n]')
    if mode == "call":
        return gbnf
    gbnf = re.sub(r"^root ::=", "tool-call ::=", gbnf, count=1, flags=re.MULTILINE)
    return "root ::= [ \\t\\n]* tool-call | text\n" + _TEXT_RULE + gbnf


_TEXT_RULE = "text ::= [ \\t\\n]* [^{ \\t\\n] [^\\x00]*\n"
_TEXT = "root ::= text\n" + _TEXT_RULE
