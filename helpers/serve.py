"""``python -m optimumllm_audio.serve``: the speech server's launch command as published model cards
name it. The server lives in :mod:`helpers.infer.serve`; this file is only that entry point."""
if __name__ == "__main__":
    from .infer.serve import main

    main()
