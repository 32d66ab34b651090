"""Talks to a running `lathe serve` through the official `openai` Python client (pip: openai) and prints what it
got as one JSON object: the model ids, and for each model a greedy chat answer, whole and streamed (with the usage
chunk), and a legacy completion. Tests compare these with Lathe's own generation.

    python3 scripts/openai_client_check.py --base-url http://127.0.0.1:8080/v1 --prompt "the tin" --max-tokens 12
"""
import argparse
import json

import openai


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-tokens", type=int, default=12)
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key)
    models = [m.id for m in client.models.list().data]
    result = {"models": models, "answers": {}}
    messages = [{"role": "user", "content": args.prompt}]
    for model in models:
        whole = client.chat.completions.create(model=model, messages=messages, max_tokens=args.max_tokens,
                                               temperature=0)
        pieces, usage, finish = [], None, None
        stream = client.chat.completions.create(model=model, messages=messages, max_tokens=args.max_tokens,
                                                temperature=0, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
        text = client.completions.create(model=model, prompt=args.prompt, max_tokens=4, temperature=0)
        result["answers"][model] = {
            "chat": whole.choices[0].message.content,
            "chat_finish": whole.choices[0].finish_reason,
            "chat_usage": whole.usage.model_dump(),
            "streamed": "".join(pieces),
            "streamed_finish": finish,
            "streamed_usage": usage,
            "completion_tokens": text.usage.completion_tokens,
        }
    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
        result["unknown_model_error"] = None
    except openai.NotFoundError as error:
        result["unknown_model_error"] = error.status_code
    print(json.dumps(result))


if __name__ == "__main__":
    main()
