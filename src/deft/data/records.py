"""The record format: one JSON object per training or evaluation example.

A record is either a conversation::

    {"messages": [{"role": "system" | "user" | "assistant" | "tool", "content": "..."}, ...]}

whose last turn must be an assistant turn (the response; with ``all_turns`` every assistant turn
is trained on, see :mod:`deft.data.tokenize`), or a prompt/response pair::

    {"prompt": "...", "response": "..."}

Optional keys, for both shapes:

* ``system`` — a system prompt (put before the conversation when it has none);
* ``answer`` — the gold answer used by evaluation (string);
* ``task`` — which scorer evaluates it (``"math"``, ``"medical"``, ``"figfont"``, ``"rg:<name>"``);
* ``id`` — a string or integer identifier;
* ``weight`` — a per-example weight (number >= 0) that multiplies the objective;
* ``token_weights`` — per-response-token weights (numbers >= 0), one per response token of the
  training tokenizer (see :mod:`deft.data.tokenize` for how they align);
* ``metadata`` — a free-form JSON object (reasoning-gym entries keep theirs here so the task's own
  verifier can score answers).

Other common shapes are recognised: TRL's ``prompt`` + ``completion`` (two strings, or a
conversational ``prompt`` list of messages and a ``completion`` list of assistant messages), and,
when no canonical key is present, ShareGPT (``conversations`` with ``from``/``value``) and Alpaca
(``instruction``, optional ``input``, ``output``). Other column names are mapped with a ``key_map``
(``{"prompt": "question", ...}``; ``completion`` may be mapped too). Evaluation records may hold a
prompt without a response (``require_response=False``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = [
    "RecordError",
    "RECORD_KEYS",
    "normalize_record",
    "record_messages",
    "parse_key_map",
]

RECORD_KEYS = ("messages", "prompt", "response", "system", "answer", "task", "id", "weight", "token_weights",
               "metadata")
ROLES = ("system", "user", "assistant", "tool")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "tool": "tool", "function": "tool", "observation": "tool"}


class RecordError(ValueError):
    """A record that cannot be used, with where it is (``FILE:LINE``) and what is wrong."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message

    def at(self, where: str) -> "RecordError":
        """The same error located at ``where``."""
        return RecordError(self.message, where)


def parse_key_map(items, allowed: tuple[str, ...] = (*RECORD_KEYS, "completion")) -> dict[str, str]:
    """Parse ``["prompt=question", "response=output"]`` (or a mapping) into ``{key: column}``;
    ``allowed`` lists the accepted keys (the record keys by default)."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise ValueError(f"--map {item!r}: expected KEY=COLUMN, e.g. prompt=question")
            key, column = item.split("=", 1)
            pairs.append((key.strip(), column.strip()))
    out = {}
    for key, column in pairs:
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--map {key}={column}: unknown key {key!r}{hint}; use one of {', '.join(allowed)}")
        if not column:
            raise ValueError(f"--map {key}=: empty column name")
        out[key] = column
    return out


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_messages(messages, require_response: bool = True, name: str = "messages") -> list[dict]:
    """Checked ``{role, content}`` messages forming a conversation: a user (or system) turn first and,
    with ``require_response``, a non-empty assistant turn last."""
    out = _message_list(messages, name)
    if out[0]["role"] == "assistant":
        raise RecordError("the conversation starts with an assistant turn; put a user turn first")
    if out[-1]["role"] != "assistant":
        if require_response:
            raise RecordError(f"the last message is a {out[-1]['role']} turn; it must be the assistant response")
        return out
    if not out[-1]["content"].strip():
        raise RecordError("empty response (the last assistant message has no text)")
    return out


def _message_list(messages, name: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise RecordError(f"'{name}' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise RecordError(f"{name}[{i}] is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise RecordError(f"{name}[{i}].role is {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise RecordError(f"{name}[{i}].content must be a string (got {type(content).__name__})")
        out.append({"role": role, "content": content})
    return out


def _from_sharegpt(turns) -> list[dict]:
    if not isinstance(turns, list):
        raise RecordError("'conversations' must be a list of {from, value} objects")
    out = []
    for i, t in enumerate(turns):
        if isinstance(t, Mapping) and "from" not in t and "role" in t:  # ShareGPT written with role/content
            t = {"from": t["role"], "value": t.get("content")}
        if not isinstance(t, Mapping) or "from" not in t or "value" not in t:
            raise RecordError(f"conversations[{i}] must have 'from' and 'value'")
        role = _SHAREGPT_ROLES.get(str(t["from"]).lower())
        if role is None:
            raise RecordError(f"conversations[{i}].from is {t['from']!r}; expected human, gpt or system")
        out.append({"role": role, "content": t["value"]})
    return out


def _gather(row: dict, key_map: Mapping[str, str]) -> tuple[dict, set]:
    """The row's values under canonical names (mapped columns first) and the columns used."""
    used = set()
    for key, column in key_map.items():
        if column not in row:
            raise RecordError(f"missing column {column!r} (mapped to {key!r}); columns are: {', '.join(map(str, row))}")
        used.add(column)
    get = {k: row[key_map[k]] for k in key_map}
    for k in (*RECORD_KEYS, "completion"):
        if k not in get and k in row and row[k] is not None:
            get[k] = row[k]
            used.add(k)
    if "messages" not in get and "prompt" not in get and "response" not in get and "completion" not in get:
        if "conversations" in row:
            get["messages"] = _from_sharegpt(row["conversations"])
            used.add("conversations")
        elif "instruction" in row and "output" in row:
            inp = row.get("input") or ""
            get["prompt"] = f"{row['instruction']}\n\n{inp}" if str(inp).strip() else row["instruction"]
            get["response"] = row["output"]
            used.update(("instruction", "input", "output"))
    return get, used


def _from_trl(get: dict) -> None:
    """TRL's prompt/completion, in place: plain strings become prompt/response, conversational
    lists (``prompt`` messages, ``completion`` assistant messages) become ``messages``."""
    if "response" in get:
        raise RecordError("has both 'completion' and 'response'; keep one")
    prompt, completion = get.get("prompt"), get.pop("completion")
    if isinstance(completion, list):
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if not isinstance(prompt, list):
            raise RecordError("a conversational 'completion' needs 'prompt' as a list of messages (or a string)")
        done = _message_list(completion, "completion")
        if any(m["role"] in ("system", "user") for m in done):
            raise RecordError("'completion' must hold the assistant's messages only")
        get.pop("prompt", None)
        get["messages"] = _message_list(prompt, "prompt") + done
    else:
        get["response"] = completion


def _shape(get: dict, row: dict, require_response: bool) -> dict:
    """The record's conversation: ``messages``, or ``prompt`` (+ ``response``)."""
    if "messages" in get:
        if "prompt" in get or "response" in get:
            raise RecordError("has both 'messages' and 'prompt'/'response'; keep one shape")
        return {"messages": _check_messages(get["messages"], require_response)}
    if isinstance(get.get("prompt"), list) and "response" not in get:  # TRL prompt-only, conversational
        messages = _check_messages(get["prompt"], require_response, "prompt")
        return {"messages": messages}
    missing = [k for k in ("prompt", "response") if k not in get and (require_response or k == "prompt")]
    if missing:
        cols = ", ".join(map(str, row)) or "none"
        if "chosen" in row and "rejected" in row:
            raise RecordError("a preference row (chosen/rejected) is not fine-tuning data; train on the preferred "
                              "answer with --map response=chosen (and prompt=COLUMN)")
        if set(row) <= {"text", "id", "metadata"} and "text" in row:
            raise RecordError("a plain 'text' row has no prompt/response split (deft trains on responses); write "
                              "prompt + response (or completion) or messages, or map columns with --map KEY=COLUMN")
        raise RecordError(
            f"missing key {' and '.join(repr(m) for m in missing)} (need 'messages', 'prompt' + 'response' or "
            f"'prompt' + 'completion'; columns are: {cols}; map other names with --map KEY=COLUMN)"
        )
    rec = {}
    for key in ("prompt", "response"):
        if key in get and not isinstance(get[key], str):
            raise RecordError(f"'{key}' must be a string (got {type(get[key]).__name__})")
        if key in get:
            rec[key] = get[key]
    if "response" in rec and not rec["response"].strip():
        raise RecordError("empty response")
    return rec


def _optional(get: dict, rec: dict) -> None:
    """Check and copy the optional keys (system, answer, task, id, weight, token_weights)."""
    if "system" in get:
        if not isinstance(get["system"], str):
            raise RecordError("'system' must be a string")
        if get["system"].strip():
            rec["system"] = get["system"]
    if "answer" in get:
        ans = get["answer"]
        if _is_number(ans) or isinstance(ans, bool):
            ans = str(ans)
        if not isinstance(ans, str):
            raise RecordError(f"'answer' must be a string (got {type(ans).__name__})")
        rec["answer"] = ans
    if "task" in get:
        if not isinstance(get["task"], str) or not get["task"]:
            raise RecordError("'task' must be a non-empty string")
        rec["task"] = get["task"]
    if "id" in get:
        if not isinstance(get["id"], (str, int)) or isinstance(get["id"], bool):
            raise RecordError("'id' must be a string or an integer")
        rec["id"] = get["id"]
    if "weight" in get:
        w = get["weight"]
        if isinstance(w, str):  # CSV cells are text
            try:
                w = float(w)
            except ValueError:
                pass
        if not _is_number(w) or w < 0:
            raise RecordError(f"'weight' must be a finite number >= 0 (got {get['weight']!r})")
        rec["weight"] = float(w)
    if "token_weights" in get:
        tw = get["token_weights"]
        if not isinstance(tw, (list, tuple)) or not tw:
            raise RecordError("'token_weights' must be a non-empty list of numbers")
        bad = next((i for i, x in enumerate(tw) if not _is_number(x) or x < 0), None)
        if bad is not None:
            raise RecordError(f"token_weights[{bad}] = {tw[bad]!r}; weights must be finite numbers >= 0")
        rec["token_weights"] = [float(x) for x in tw]


def normalize_record(obj: Any, key_map: Mapping[str, str] | None = None, *, keep_extra: bool = False,
                     require_response: bool = True) -> dict:
    """Check one raw row and return it in the canonical record format (only the keys of
    :data:`RECORD_KEYS`, in that order). ``key_map`` maps canonical keys to the row's column names.
    With ``keep_extra``, unrecognised columns are kept under ``metadata``. Shapes: deft's
    (``messages`` or ``prompt`` + ``response``), TRL's ``prompt`` + ``completion`` (strings, or lists
    of messages), ShareGPT ``conversations`` and Alpaca ``instruction``/``input``/``output``.
    ``require_response=False`` accepts a prompt alone (evaluation records).

    Raises :class:`RecordError` saying what is wrong (the caller adds where)."""
    if not isinstance(obj, Mapping):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    row = dict(obj)
    get, used = _gather(row, dict(key_map or {}))
    if "completion" in get:
        _from_trl(get)
    rec = _shape(get, row, require_response)
    _optional(get, rec)
    meta = get.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        raise RecordError("'metadata' must be a JSON object")
    meta = dict(meta or {})
    if keep_extra:
        for k, v in row.items():
            if k not in used and k not in meta:
                meta[k] = v
    if meta:
        rec["metadata"] = meta
    return rec


def record_messages(record: Mapping) -> list[dict]:
    """The record as a list of chat messages (system first when the record has ``system`` and the
    conversation has no system turn)."""
    if "messages" in record:
        messages = [dict(m) for m in record["messages"]]
    else:
        messages = [{"role": "user", "content": record["prompt"]}]
        if "response" in record:  # evaluation records may hold a prompt alone
            messages.append({"role": "assistant", "content": record["response"]})
    system = record.get("system")
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return messages
