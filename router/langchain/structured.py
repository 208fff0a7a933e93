"""Tools and structured output for the router, as LangChain chat models offer them.

``bind_tools`` is a binding (``tools``/``tool_choice`` as call kwargs, passed to every
candidate; candidates without tool support are excluded). ``with_structured_output`` forces a
call of the schema's tool and parses it, with ``include_raw`` as LangChain defines it.

Example:
    >>> structured = structured_output(router, Capital)
    >>> structured.invoke("What is the capital of France?")
    Capital(country='France', city='Paris')
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1


def bind_tools(model: Runnable[Any, Any], tools: Sequence[Any], *, tool_choice: Any = None,
               **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
    """``model`` bound to ``tools`` (OpenAI tool format) and ``tool_choice``."""
    return model.bind(tools=tuple(convert_to_openai_tool(t) for t in tools), tool_choice=tool_choice, **kwargs)


def structured_output(model: Runnable[Any, Any], schema: Any, *,
                      include_raw: bool = False) -> Runnable[LanguageModelInput, Any]:
    """``model`` answering as ``schema`` (pydantic class, TypedDict or JSON schema) via a forced
    tool call; with ``include_raw`` the result is ``{"raw", "parsed", "parsing_error"}``."""
    tool = convert_to_openai_tool(schema)
    name = tool["function"]["name"]
    bound = bind_tools(model, [schema], tool_choice=name, ls_structured_output_format={
        "kwargs": {"method": "function_calling"}, "schema": tool})
    parser: Runnable[Any, Any]
    if isinstance(schema, type) and issubclass(schema, (BaseModel, BaseModelV1)):
        parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
    else:
        parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
    if not include_raw:
        return bound | parser
    parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parse.with_fallbacks([no_parse], exception_key="parsing_error")
