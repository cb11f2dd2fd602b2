"""Wire protocols of the LLM providers: OpenAI chat completions and Anthropic messages."""
