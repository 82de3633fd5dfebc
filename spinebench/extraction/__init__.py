"""Answer extraction: from a model's free-text response to the option letters it committed to.

The public import path is `spinebench.extract` (extract_answer, Extraction, METHODS, JUDGED_METHODS, the
judge prompt and reply); this package holds the rules, one concern a module.

The contract is precision first: a letter (or a set of letters) comes back only when the response commits
to it; otherwise nothing, and the optional judge model gets a look (docs/extraction.md). A wrong letter is
a silent error (the answer is scored as if the model had said it), a missing one is only a second look.

The response is first *prepared* (`normalize`): Unicode forms unified (full-width letters, CJK punctuation),
a reasoning model's `<think>` block dropped, answer boxes (`\\boxed{}`, `<|begin_of_box|>`, `<answer>`, a
JSON `"answer"`) turned into an `Answer:` line, chat-template tokens removed (a new user turn becomes
`Human:`), markdown dropped. A model that goes on generating new questions or dialogue turns after
answering is cut at the first such turn (`continuation`).

Stages then run in order (`pipeline`) and the first that decides wins; each answer records its stage:

1. `final_phrase`: the phrase the prompts demand (`My final option: [X]` / `My final options: [X, Y]`, or
   its translation), tolerant of markdown, missing brackets, case and spacing. The last occurrence decides.
2. `fallback`: other explicit statements of letters (`statements`): conclusion markers in several
   languages ("The correct answer is: B", "Answer:\\nC", "答案：D") and letter-first conclusions ("Option C
   is correct") (`markers`), option references in a concluding position ("most consistent with (D)
   Osteophytes", "spinal canal stenosis (E)") (`references`), and lines that hold nothing but an answer
   ("(B) Disc space narrowing", "B, D", a bare letter before an explanation) (`lines`). The last statement
   in the response decides.
3. `option_text`: a concluding phrase names one option's text ("the most likely diagnosis is
   spondylolisthesis", "the affected levels are L4-L5 and L5-S1"), or a line is only an option's text.
4. `low_confidence`: no concluding phrase, but the response names exactly one option (diagnosis) or a set of
   levels (localization) without negating it. The answer is kept and marked, and goes to the judge when
   one is configured.
5. `none`: nothing usable (also refusals, hedges between options, empty and truncated responses).

Stages 3 and 4 are `option_text`, over the option mentions that `runs` finds affirmed (`cues`, `negation`)
and the refusals and hedges of `hedges`.

A stage that finds a statement it cannot turn into a valid answer (a letter outside the options, two
letters for a diagnosis question, "B or D", a letter whose attached text names another option) decides
`none`: the model committed to something that is not an answer, and an earlier, different statement must
not be substituted for it.

Modules, in the order they build on one another:

- `result`: the extraction result (`Extraction`, `METHODS`, `JUDGED_METHODS`), answer candidates, validity;
- `normalize`: preparing the text;
- `levels`: lumbar level mentions and ranges;
- `synonyms`: other names and translations of the benchmark's labels;
- `names`: how a question's options are named in a response (`OptionNames`);
- `lists`: parsing an answer list of letters, option texts or levels;
- `sentences`: sentence and clause bounds;
- `final_phrase`: stage 1;
- `lines`, `markers`, `references`: the statements of stage 2; `statements` gathers them;
- `continuation`: cutting generated continuations;
- `cues`, `negation`, `hedges`, `runs`, `option_text`: stages 3 and 4;
- `pipeline`: `extract_answer`, the stages in order;
- `judge`: the judge prompt and the reading of its reply.
"""
