"""The inference engine (what ``pip install optimumllm-audio`` promises): OptimumTTS, constrained
generation, voices and cloning references, best-of-N, and the OpenAI-compatible speech server.

Imports only the core (tokens, profiles, audio, codec, models, scores, text/): a test checks that
importing it loads no module of train/, data/, plan/ or colab/.
"""
