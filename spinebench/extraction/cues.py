"""Stages 3 and 4, conclusion cues: the phrases that make a named option the conclusion."""

from __future__ import annotations

import re

# Phrases after which a named option is the conclusion ("the most likely diagnosis is", "consistent with").
_TEXT_CUE_BEFORE = re.compile(
    r"""(?:
        \b(?:diagnosis|diagnoses|impression|conclusion|answer|findings?|abnormality|pathology|lesions?|disease)
            \s*(?:here\s+)?(?:is|are|:|=|would\s+be)
      | \bmost\s+(?:likely|consistent|probable)(?:\s+(?:diagnosis|finding|option|answer))?
            \s*(?:is|:|would\s+be)?
      | \b(?:consistent|compatible|in\s+keeping)\s+with
      | \b(?:suggestive|indicative|diagnostic|characteristic)\s+of
      | \b(?:indicates?|suggests?|represents?|confirms?|denotes?)
      | \bbest\s+(?:explained|described|characteri[sz]ed)\s+(?:by|as)
      | \b(?:this|which|it|that)\s+(?:is|represents)
      | \bpoints?\s+to(?:wards)?
      | \bi\s+(?:diagnose|conclude)
      | \b(?:located|found|situated)\s+(?:at|in)
      | \b(?:levels?|segments?|discs?)\s+(?:affected|involved)\s+(?:is|are|:)
      | \b(?:affected|involved|abnormal|diseased|pathologic(?:al)?)\s+(?:levels?|segments?|discs?)
            \s*(?:is|are|:|include)
      | \b(?:is|are)\s+(?:at|in)\b
      | \binvolves?
      | \bdiagn(?:o|ó)stico\s*(?:es|:)|\bcompatible\s+con|\bse\s+trata\s+de|\bniveles\s+afectados\s+son
      | \bil\s+s'agit\s+d(?:'un|'une|e)|\bdiagnostic\s*(?:est|:)|\bcompatible\s+avec
      | \bniveaux\s+atteints\s+sont
      | \bdiagnose\s*(?:ist|:|lautet)|\bvereinbar\s+mit|\bhandelt\s+sich\s+um|\bbetroffen\s+sind
      | 诊断\s*(?:为|是|:)|考虑(?:为)?|符合|提示|受累节段为|病变位于
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Words allowed between a cue and the named option ("consistent with a grade I spondylolisthesis").
_FILLER = re.compile(
    r"^(?:\s*(?:an?|the|of|mild|moderate|severe|marked|significant|advanced|early|multilevel|multi-level|"
    r"degenerative|grade\s+[iv1-4]+|likely|probable|definite|clear|obvious|bilateral|left|right|lumbar|"
    r"levels?|segments?|at|in|un|une|una|uno|el|la|le|los|las|eine?n?|die|der|das|de|d'|l')\b)*\s*$",
    re.IGNORECASE,
)
# After a named option: "X is the (most likely) diagnosis", "L4/L5 and L5/S1 are affected".
_TEXT_CUE_AFTER = re.compile(
    r"^\s*(?:is|are|would\s+be|seems\s+to\s+be)\s+(?:the\s+)?(?:most\s+likely\s+|correct\s+|best\s+|final\s+|"
    r"likely\s+|right\s+)?(?:diagnosis|answer|option|choice|finding|affected|involved)\b",
    re.IGNORECASE,
)
# Sentence openings that make the whole sentence a conclusion.
_CONCLUDING_SENTENCE = re.compile(
    r"^\s*(?:in\s+conclusion|in\s+summary|overall|therefore|thus|hence|so|to\s+conclude|taken\s+together|"
    r"consequently|en\s+conclusi(?:o|ó)n|por\s+lo\s+tanto|en\s+resumen|donc|par\s+cons(?:é|e)quent|"
    r"zusammenfassend|daher|somit|insgesamt|portanto|em\s+conclus(?:ã|a)o|quindi|in\s+conclusione|"
    r"综上所述|因此|总之|таким\s+образом)\b",
    re.IGNORECASE,
)


def concludes(sentence: str) -> bool:
    """Whether `sentence` opens as a conclusion ("In conclusion, ...", "因此")."""
    return bool(_CONCLUDING_SENTENCE.match(sentence))


def cued(before: str, after: str) -> bool:
    """Whether a concluding phrase introduces the run (only filler words between) or follows it."""
    cues = list(_TEXT_CUE_BEFORE.finditer(before))
    if cues and _FILLER.match(before[cues[-1].end() :]):
        return True
    return bool(_TEXT_CUE_AFTER.match(after))
