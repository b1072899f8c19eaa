"""Recorded provider responses, byte for byte as the wire carries them (request ids shortened)."""

# DashScope, result_format=message, incremental_output=true: each chunk a new piece,
# finish_reason the string "null" until the last chunk.
DASHSCOPE_INCREMENTAL = (
    'id:1\n'
    'event:result\n'
    ':HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"你好","role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":12,"output_tokens":1,"input_tokens":11},"request_id":"5f1c0a3e-1"}\n'
    '\n'
    'id:2\n'
    'event:result\n'
    ':HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"！有什么","role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":14,"output_tokens":3,"input_tokens":11},"request_id":"5f1c0a3e-1"}\n'
    '\n'
    'id:3\n'
    'event:result\n'
    ':HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"可以帮您的吗？","role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":18,"output_tokens":7,"input_tokens":11},"request_id":"5f1c0a3e-1"}\n'
    '\n'
    'id:4\n'
    'event:result\n'
    ':HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"","role":"assistant"},"finish_reason":"stop"}]},'
    '"usage":{"total_tokens":18,"output_tokens":7,"input_tokens":11},"request_id":"5f1c0a3e-1"}\n'
    '\n'
)
# The mocked body reaches the provider in one read, and what arrives together goes out as one delta.
DASHSCOPE_DELTAS = ["你好！有什么可以帮您的吗？"]

# The same reply from a stream that ignored incremental_output: each chunk holds the
# whole text so far, the last one repeats it with finish_reason "stop".
DASHSCOPE_CUMULATIVE = (
    'id:1\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"你好","role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":12,"output_tokens":1,"input_tokens":11},"request_id":"7a2b-2"}\n\n'
    'id:2\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"你好！有什么","role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":14,"output_tokens":3,"input_tokens":11},"request_id":"7a2b-2"}\n\n'
    'id:3\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"你好！有什么可以帮您的吗？","role":"assistant"},'
    '"finish_reason":"null"}]},"usage":{"total_tokens":18,"output_tokens":7,"input_tokens":11},"request_id":"7a2b-2"}\n\n'
    'id:4\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"你好！有什么可以帮您的吗？","role":"assistant"},'
    '"finish_reason":"stop"}]},"usage":{"total_tokens":18,"output_tokens":7,"input_tokens":11},"request_id":"7a2b-2"}\n\n'
)

# The old result_format=text shape: output.text and output.finish_reason.
DASHSCOPE_TEXT_FORMAT = (
    'id:1\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"finish_reason":"null","text":"Hello"},'
    '"usage":{"total_tokens":9,"output_tokens":1,"input_tokens":8},"request_id":"c3d4-3"}\n\n'
    'id:2\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"finish_reason":"null","text":"! How can I"},'
    '"usage":{"total_tokens":12,"output_tokens":4,"input_tokens":8},"request_id":"c3d4-3"}\n\n'
    'id:3\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"finish_reason":"stop","text":" help?"},'
    '"usage":{"total_tokens":14,"output_tokens":6,"input_tokens":8},"request_id":"c3d4-3"}\n\n'
)
DASHSCOPE_TEXT_DELTAS = ["Hello! How can I help?"]

DASHSCOPE_TEXT_FORMAT_CUMULATIVE = (
    'id:1\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"finish_reason":"null","text":"Hello"},"request_id":"c3d4-4"}\n\n'
    'id:2\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"finish_reason":"null","text":"Hello! How can I"},"request_id":"c3d4-4"}\n\n'
    'id:3\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"finish_reason":"stop","text":"Hello! How can I help?"},"request_id":"c3d4-4"}\n\n'
)

# Non-streamed replies (no X-DashScope-SSE), in both shapes.
DASHSCOPE_JSON_MESSAGE = (
    '{"output":{"choices":[{"finish_reason":"stop","message":{"role":"assistant",'
    '"content":"你好！有什么可以帮您的吗？"}}]},'
    '"usage":{"total_tokens":18,"output_tokens":7,"input_tokens":11},"request_id":"e5f6-5"}'
)
DASHSCOPE_JSON_TEXT = (
    '{"output":{"text":"Hello! How can I help?","finish_reason":"stop"},'
    '"usage":{"total_tokens":14,"output_tokens":6,"input_tokens":8},"request_id":"e5f6-6"}'
)

# A tool call whose JSON arguments arrive in three pieces.
DASHSCOPE_TOOL_CALL = (
    'id:1\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"","tool_calls":[{"function":{"name":"transfer_to_human",'
    '"arguments":"{\\"reason\\": \\""},"index":0,"id":"call_0a1b","type":"function"}],"role":"assistant"},'
    '"finish_reason":"null"}]},"usage":{"total_tokens":230,"output_tokens":8,"input_tokens":222},"request_id":"9e8d-7"}\n\n'
    'id:2\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"","tool_calls":[{"function":{"arguments":"customer asks"},'
    '"index":0,"id":"","type":"function"}],"role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":232,"output_tokens":10,"input_tokens":222},"request_id":"9e8d-7"}\n\n'
    'id:3\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"","tool_calls":[{"function":{"arguments":" for a person\\"}"},'
    '"index":0,"id":"","type":"function"}],"role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":236,"output_tokens":14,"input_tokens":222},"request_id":"9e8d-7"}\n\n'
    'id:4\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"","role":"assistant"},"finish_reason":"tool_calls"}]},'
    '"usage":{"total_tokens":236,"output_tokens":14,"input_tokens":222},"request_id":"9e8d-7"}\n\n'
)
TOOL_CALL_ARGUMENTS = {"reason": "customer asks for a person"}

# Content moderation stopping a reply after its first chunk.
DASHSCOPE_ERROR_MID_STREAM = (
    'id:1\nevent:result\n:HTTP_STATUS/200\n'
    'data:{"output":{"choices":[{"message":{"content":"我","role":"assistant"},"finish_reason":"null"}]},'
    '"usage":{"total_tokens":12,"output_tokens":1,"input_tokens":11},"request_id":"0c9b-8"}\n\n'
    'id:2\nevent:error\n:HTTP_STATUS/400\n'
    'data:{"code":"DataInspectionFailed","message":"Output data may contain inappropriate content.",'
    '"request_id":"0c9b-8"}\n\n'
)

# Throttled inside a 200 stream, before any text.
DASHSCOPE_ERROR_EVENT_THROTTLED = (
    'id:1\nevent:error\n:HTTP_STATUS/429\n'
    'data:{"code":"Throttling.RateQuota","message":"Requests rate limit exceeded, please try again later.",'
    '"request_id":"1d2e-9"}\n\n'
)

DASHSCOPE_401 = '{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"2f3a-10"}'
DASHSCOPE_429 = (
    '{"code":"Throttling.RateQuota","message":"Requests rate limit exceeded, please try again later.",'
    '"request_id":"3a4b-11"}'
)
DASHSCOPE_500 = (
    '{"code":"InternalError","message":"An internal error has occured, please try again later or '
    'contact service support.","request_id":"4b5c-12"}'
)
# A 400 framed as SSE although the response says application/json.
DASHSCOPE_400_SSE_FRAMED = (
    'id:1\nevent:error\n:HTTP_STATUS/400\n'
    'data:{"code":"InvalidParameter","message":"Role must be in [user, assistant]",'
    '"request_id":"5c6d-13"}\n\n'
)

# OpenAI-compatible chat completions.
OPENAI_STREAM = (
    'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1732500000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1732500000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1732500000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{"content":" there!"},"logprobs":null,"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1732500000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n'
    'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1732500000,"model":"gpt-4o-mini",'
    '"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}\n\n'
    'data: [DONE]\n\n'
)
OPENAI_DELTAS = ["Hello there!"]

OPENAI_TOOL_CALL = (
    'data: {"id":"chatcmpl-7t","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant",'
    '"content":null,"tool_calls":[{"index":0,"id":"call_Q1","type":"function","function":{"name":"transfer_to_human",'
    '"arguments":""}}]},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-7t","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":'
    '[{"index":0,"function":{"arguments":"{\\"rea"}}]},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-7t","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":'
    '[{"index":0,"function":{"arguments":"son\\":\\"customer asks"}}]},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-7t","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":'
    '[{"index":0,"function":{"arguments":" for a person\\"}"}}]},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-7t","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
    '"finish_reason":"tool_calls"}]}\n\n'
    'data: [DONE]\n\n'
)

# Two calls in one turn, their pieces interleaved.
OPENAI_TWO_TOOL_CALLS = (
    'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function",'
    '"function":{"name":"lookup_order","arguments":"{\\"order"}},{"index":1,"id":"call_b","type":"function",'
    '"function":{"name":"transfer_to_human","arguments":"{\\"reason\\""}}]},"finish_reason":null}]}\n\n'
    'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":": \\"refund\\"}"}},'
    '{"index":0,"function":{"arguments":"_id\\": 42}"}}]},"finish_reason":null}]}\n\n'
    'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    'data: [DONE]\n\n'
)

OPENAI_JSON_REPLY = (
    '{"id":"chatcmpl-3j","object":"chat.completion","created":1732500000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!","refusal":null},'
    '"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}'
)

OPENAI_ERROR_MID_STREAM = (
    'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    'data: {"error":{"message":"The server had an error while processing your request.",'
    '"type":"server_error","param":null,"code":null}}\n\n'
)

OPENAI_401 = (
    '{"error":{"message":"Incorrect API key provided: sk-abc***xyz. You can find your API key at '
    'https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,'
    '"code":"invalid_api_key"}}'
)
OPENAI_429 = (
    '{"error":{"message":"Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, '
    'Used 3, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}'
)
