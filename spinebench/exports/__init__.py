"""The benchmark in other harnesses' formats: Hugging Face datasets (`hf`), an lmms-eval task folder
(`lmms_eval`), VLMEvalKit's multiple-choice TSV (`vlmevalkit`) and the original SpineBench release's JSON
layout (`spinebench_json`). Each is built from the benchmark tables alone (`common`), so an export changes
only when the benchmark does.
"""
