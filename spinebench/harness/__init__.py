"""Code that other evaluation harnesses call to run SpineBench with this project's prompts, answer
extraction and metrics (`lmms_eval`: the functions of the exported lmms-eval task folder's utils.py).

Nothing here imports a harness: the harness imports this, so the package stays usable without it.
"""
