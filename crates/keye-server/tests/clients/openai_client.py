"""Drives a keye server with the official `openai` Python client.

Usage: python3 openai_client.py BASE_URL < spec.json

spec.json: {"model": NAME, "cases": [{"name": ..., "messages": [...]}]}. Prints one JSON object
with what the client saw; the Rust test compares it with the reference outputs.
"""

import json
import sys

import openai


def main() -> None:
    base_url = sys.argv[1]
    spec = json.load(sys.stdin)
    model = spec["model"]
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    report = {"models": [m.id for m in client.models.list().data], "cases": {}, "errors": {}}

    for case in spec["cases"]:
        completion = client.chat.completions.create(
            model=model, messages=case["messages"], max_tokens=16, temperature=0
        )
        choice = completion.choices[0]
        plain = {
            "content": choice.message.content,
            "reasoning_content": (choice.message.model_extra or {}).get("reasoning_content"),
            "finish_reason": choice.finish_reason,
            "usage": completion.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}),
        }

        content, roles, finish, usage = [], [], None, None
        for chunk in client.chat.completions.create(
            model=model,
            messages=case["messages"],
            max_completion_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.usage is not None:
                usage = chunk.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
            for choice in chunk.choices:
                if choice.delta.role:
                    roles.append(choice.delta.role)
                if choice.delta.content:
                    content.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
        streamed = {"content": "".join(content), "roles": roles, "finish_reason": finish, "usage": usage}
        report["cases"][case["name"]] = {"plain": plain, "streamed": streamed}

    extra = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        seed=5,
        extra_body={"top_k": 1, "chat_template_kwargs": {"enable_thinking": False}, "repetition_penalty": 1.05},
    )
    report["extra_body_tokens"] = extra.usage.completion_tokens

    def expect_error(name, **kwargs):
        try:
            client.chat.completions.create(**kwargs)
        except openai.APIStatusError as error:
            report["errors"][name] = {
                "status": error.status_code,
                "class": type(error).__name__,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        else:
            report["errors"][name] = {"status": 200}

    hi = [{"role": "user", "content": "hi"}]
    expect_error("unknown_model", model="not-" + model, messages=hi)
    expect_error("empty_messages", model=model, messages=[])
    expect_error("bad_temperature", model=model, messages=hi, temperature=7)
    expect_error(
        "bad_image",
        model=model,
        messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
            {"type": "text", "text": "?"},
        ]}],
    )
    expect_error("n_two", model=model, messages=hi, n=2)
    try:
        stream = client.chat.completions.create(model="nope", messages=hi, stream=True)
        list(stream)
        report["errors"]["stream_unknown_model"] = {"status": 200}
    except openai.APIStatusError as error:
        report["errors"]["stream_unknown_model"] = {"status": error.status_code, "class": type(error).__name__}

    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
