"""Which language a narrative is in, offline: ``py3langid`` (langid.py), whose model ships in its wheel.

The classifier reads English only, so the ingress asks, once per case, what language the
narrative is in; every response carries the answer (``Language.to_json()``), and a
narrative in a language the model does not read goes to human review with a reason that
names it (``unread_language_reason``; the model's languages are configured, English by
default, ``DEFAULT_MODEL_LANGUAGES``).

Why py3langid: ``python -m bench.language_id`` compared it with ``lingua-language-detector``
and ``pycld2`` on helpline-style English, Swahili, Sheng, code-switched and French text
(``data/language/samples.jsonl``) and on 400 random English/Swahili mixes; the figures are
in bench/RESULTS.md, "Language identification". It was the only candidate that sent every
labelled text the right way, English or not (57 of 57; lingua and CLD2 56), and that never
called a mostly Swahili mix English (CLD2 did 10 times, lingua once). It reads 140
languages (Swahili, Somali, Amharic, Kinyarwanda, Luganda, Oromo, Kikuyu and Nigerian Pidgin
among them), downloads nothing, loads in about a second (94 MiB), and takes about 0.05 ms a
sentence. CLD2 is ten times faster but errs the dangerous way; lingua is slower and, with
all its languages, takes 1.3 GB.

What ``identify`` answers:

- ``code``: the ISO 639-1 code ("en", "sw", "fr", ...). The model's few dialect labels
  are given their macrolanguage's code (Egyptian Arabic "ar", Kikuyu "ki", Cantonese
  "zh"); the languages with no two-letter code keep their ISO 639-3 code ("pcm" Nigerian
  Pidgin, "kab" Kabyle). "und" (Undetermined) for text with no letters, or none the
  model finds evidence in (a letter or two: its odds are then uniform).
- ``name``: the language's English name ("English", "Swahili").
- ``confidence`` in [0, 1], 4 places: the model's probability for that language, its
  scores normalized with a temperature that grows with the text's length (py3langid's
  ``norm_probs``), so a few words rarely reach the confidence of a paragraph. Where the
  code-switching rule below makes a text English, it is the English share it measured.

**Sheng is Swahili.** Sheng, Nairobi's slang that mixes Swahili, English and other
languages on a Swahili grammar, is no language the model (or any candidate measured) was
trained on; it comes out Swahili ("sw"), which is what the routing needs: the classifier
does not read it. There is no principled offline way here to tell Sheng from Swahili, so
none is tried.

**Code-switching: mostly English is English.** Scored as a whole, a mix of English and
Swahili leans away from English: half to two thirds English words still came out
Swahili (50 of 400 random mixes, none the other way). So when the whole text is not
English, the words are cut into consecutive windows of ``WINDOW_WORDS`` words, each window
is identified on its own, and the text is English when the windows called English hold at
least ``MOSTLY_ENGLISH_SHARE`` of the words. Measured on the same 400 mixes: no text with
most words Swahili came out English, and the 17 mostly English ones that did not all had
51% to 57% English words (windows of 3, 5, 6 and 8 words did worse; a lower share
threshold would call Swahili English). Every labelled English-with-some-Swahili text
measured 0.75 or more, every Sheng and Swahili-with-some-English one 0.2 or less.

Long text: the model reads a sample of at most ``SAMPLE_CHARS`` characters, taken in
``SAMPLE_PIECES`` pieces spread evenly over the narrative (cut at spaces), and the
window rule looks at no more than ``SHARE_WINDOWS`` windows spread over that sample; so
the cost per case is bounded whatever the narrative's length. Measured on 2 shared Xeon
cores (bench/RESULTS.md): 0.2 ms for a 100-word English narrative, 0.5 ms for 2,000 words;
0.9 and 1.4 ms for Swahili ones, where the window rule runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from py3langid.langid import MODEL_FILE
from py3langid.langid import LanguageIdentifier as _Langid

# Whole-text not English: English if windows called English hold at least this share of the words.
MOSTLY_ENGLISH_SHARE = 0.5
# Words per window for that share (measured: 4 erred least of 3, 4, 5, 6 and 8).
WINDOW_WORDS = 4
# At most this many windows, spread evenly over the sample, decide the share.
SHARE_WINDOWS = 32
# At most this many characters of a narrative are read, in this many evenly spread pieces.
SAMPLE_CHARS = 2_000
SAMPLE_PIECES = 4
# The languages the classifier reads, unless configured otherwise.
DEFAULT_MODEL_LANGUAGES: tuple[str, ...] = ("en",)

UNDETERMINED_CODE = "und"
UNDETERMINED_NAME = "Undetermined"

# The model's labels (py3langid 0.4, 140 of them) → (ISO 639-1 code where there is one, English name).
_LABELS: dict[str, tuple[str, str]] = {
    "ace": ("ace", "Acehnese"), "af": ("af", "Afrikaans"), "am": ("am", "Amharic"), "an": ("an", "Aragonese"),
    "ar": ("ar", "Arabic"), "ary": ("ar", "Moroccan Arabic"), "arz": ("ar", "Egyptian Arabic"),
    "as": ("as", "Assamese"), "az": ("az", "Azerbaijani"), "ba": ("ba", "Bashkir"), "bcl": ("bcl", "Central Bikol"),
    "be": ("be", "Belarusian"), "bg": ("bg", "Bulgarian"), "bn": ("bn", "Bengali"), "br": ("br", "Breton"),
    "bs": ("bs", "Bosnian"), "ca": ("ca", "Catalan"), "crh": ("crh", "Crimean Tatar"), "cs": ("cs", "Czech"),
    "cy": ("cy", "Welsh"), "da": ("da", "Danish"), "de": ("de", "German"), "dz": ("dz", "Dzongkha"),
    "el": ("el", "Greek"), "en": ("en", "English"), "eo": ("eo", "Esperanto"), "es": ("es", "Spanish"),
    "et": ("et", "Estonian"), "eu": ("eu", "Basque"), "ext": ("ext", "Extremaduran"), "fa": ("fa", "Persian"),
    "fi": ("fi", "Finnish"), "fo": ("fo", "Faroese"), "fr": ("fr", "French"), "fuv": ("ff", "Nigerian Fulfulde"),
    "fy": ("fy", "Western Frisian"), "ga": ("ga", "Irish"), "gcf": ("gcf", "Guadeloupean Creole"),
    "gcr": ("gcr", "Guianese Creole"), "gd": ("gd", "Scottish Gaelic"), "gl": ("gl", "Galician"),
    "gom": ("gom", "Goan Konkani"), "grc": ("grc", "Ancient Greek"), "gu": ("gu", "Gujarati"),
    "gug": ("gn", "Paraguayan Guarani"), "guw": ("guw", "Gun"), "ha": ("ha", "Hausa"),
    "hbo": ("hbo", "Ancient Hebrew"), "he": ("he", "Hebrew"), "hi": ("hi", "Hindi"), "hr": ("hr", "Croatian"),
    "ht": ("ht", "Haitian Creole"), "hu": ("hu", "Hungarian"), "hy": ("hy", "Armenian"),
    "id": ("id", "Indonesian"), "ig": ("ig", "Igbo"), "is": ("is", "Icelandic"), "it": ("it", "Italian"),
    "ja": ("ja", "Japanese"), "jv": ("jv", "Javanese"), "ka": ("ka", "Georgian"), "kab": ("kab", "Kabyle"),
    "kik": ("ki", "Kikuyu"), "kk": ("kk", "Kazakh"), "km": ("km", "Khmer"), "kn": ("kn", "Kannada"),
    "ko": ("ko", "Korean"), "ku": ("ku", "Kurdish"), "ky": ("ky", "Kyrgyz"), "la": ("la", "Latin"),
    "lb": ("lb", "Luxembourgish"), "lg": ("lg", "Ganda"), "lij": ("lij", "Ligurian"), "ln": ("ln", "Lingala"),
    "lo": ("lo", "Lao"), "lt": ("lt", "Lithuanian"), "ltg": ("ltg", "Latgalian"), "lv": ("lv", "Latvian"),
    "mg": ("mg", "Malagasy"), "mk": ("mk", "Macedonian"), "ml": ("ml", "Malayalam"), "mn": ("mn", "Mongolian"),
    "mr": ("mr", "Marathi"), "ms": ("ms", "Malay"), "mt": ("mt", "Maltese"), "my": ("my", "Burmese"),
    "ne": ("ne", "Nepali"), "nl": ("nl", "Dutch"), "nn": ("nn", "Norwegian Nynorsk"), "no": ("no", "Norwegian"),
    "nso": ("nso", "Northern Sotho"), "oc": ("oc", "Occitan"), "om": ("om", "Oromo"), "or": ("or", "Odia"),
    "pa": ("pa", "Punjabi"), "pcm": ("pcm", "Nigerian Pidgin"), "pl": ("pl", "Polish"), "ps": ("ps", "Pashto"),
    "pt": ("pt", "Portuguese"), "qu": ("qu", "Quechua"), "ro": ("ro", "Romanian"), "ru": ("ru", "Russian"),
    "rw": ("rw", "Kinyarwanda"), "sa": ("sa", "Sanskrit"), "sdh": ("ku", "Southern Kurdish"),
    "se": ("se", "Northern Sami"), "si": ("si", "Sinhala"), "sk": ("sk", "Slovak"), "sl": ("sl", "Slovenian"),
    "sn": ("sn", "Shona"), "so": ("so", "Somali"), "sq": ("sq", "Albanian"), "sr": ("sr", "Serbian"),
    "st": ("st", "Southern Sotho"), "sv": ("sv", "Swedish"), "sw": ("sw", "Swahili"), "ta": ("ta", "Tamil"),
    "te": ("te", "Telugu"), "tg": ("tg", "Tajik"), "th": ("th", "Thai"), "tk": ("tk", "Turkmen"),
    "tl": ("tl", "Tagalog"), "tr": ("tr", "Turkish"), "tt": ("tt", "Tatar"), "ug": ("ug", "Uyghur"),
    "uk": ("uk", "Ukrainian"), "ur": ("ur", "Urdu"), "uz": ("uz", "Uzbek"), "uzs": ("uz", "Southern Uzbek"),
    "vec": ("vec", "Venetian"), "vi": ("vi", "Vietnamese"), "vo": ("vo", "Volapük"), "wa": ("wa", "Walloon"),
    "wuu": ("zh", "Wu Chinese"), "xh": ("xh", "Xhosa"), "yo": ("yo", "Yoruba"), "yue": ("zh", "Cantonese"),
    "zh": ("zh", "Chinese"), "zu": ("zu", "Zulu"), "zxx": (UNDETERMINED_CODE, UNDETERMINED_NAME),
}
# Code → English name, for every code ``identify`` can answer (the macrolanguage's own name).
_NAMES: dict[str, str] = {code: name for label, (code, name) in _LABELS.items() if label == code}
_NAMES.update({"ff": "Fulah", "gn": "Guarani", "ki": "Kikuyu"})

_NAMES[UNDETERMINED_CODE] = UNDETERMINED_NAME

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_LEADING_PART = re.compile(r"^\S*\s+")  # (text with no spaces, e.g. Thai, is kept whole)
_TRAILING_PART = re.compile(r"\s+\S*$")


def language_name(code: str) -> str:
    """The English name of a code ``identify`` can answer ("sw" → "Swahili"); KeyError otherwise."""
    return _NAMES[code]


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    confidence: float

    def to_json(self) -> dict:
        return {"code": self.code, "name": self.name, "confidence": self.confidence}


UNDETERMINED = Language(UNDETERMINED_CODE, UNDETERMINED_NAME, 0.0)


def _language(label: str, confidence: float) -> Language:
    code, name = _LABELS.get(label, (label, label))
    if code == UNDETERMINED_CODE:
        return UNDETERMINED
    return Language(code, name, round(min(max(confidence, 0.0), 1.0), 4))


def _sample(text: str, limit: int = SAMPLE_CHARS, pieces: int = SAMPLE_PIECES) -> str:
    """The text itself, or ``pieces`` slices of it spread evenly, ``limit`` characters in all, cut at spaces."""
    if len(text) <= limit:
        return text
    size = limit // pieces
    stride = (len(text) - size) / (pieces - 1) if pieces > 1 else 0
    slices = []
    for i in range(pieces):
        start = int(i * stride)
        piece = text[start:start + size]
        if start > 0 and not text[start - 1].isspace():
            piece = _LEADING_PART.sub("", piece, count=1)  # a word cut at the front
        if start + size < len(text) and not text[start + size].isspace():
            piece = _TRAILING_PART.sub("", piece, count=1)  # and one cut at the back
        slices.append(piece)
    return "\n".join(slices)


class LanguageIdentifier:
    """Identifies a narrative's language; build once (about 0.6 s: the model is decompressed), call per case.

    ``identify`` is thread-safe: it only reads the model.
    """

    def __init__(self) -> None:
        self._model = _Langid.from_model_file(MODEL_FILE, norm_probs=True)
        # The model's answer when it finds nothing to go on (a letter or two, digits): uniform odds.
        self._no_evidence = self._model.classify("")

    def identify(self, text: str) -> Language:
        sample = _sample(text)
        if not any(ch.isalpha() for ch in sample):
            return UNDETERMINED
        label, probability = self._model.classify(sample)
        if (label, probability) == self._no_evidence:
            return UNDETERMINED
        if label != "en":
            share = self.english_share(sample)
            if share >= MOSTLY_ENGLISH_SHARE:
                return _language("en", share)
        return _language(label, probability)

    def english_share(self, text: str, window_words: int = WINDOW_WORDS) -> float:
        """The share of ``text``'s words in windows of ``window_words`` words the model calls English.

        At most ``SHARE_WINDOWS`` windows, spread evenly over the text, are identified.
        """
        words = _WORD.findall(text)
        if not words:
            return 0.0
        starts = range(0, len(words), window_words)
        if len(starts) > SHARE_WINDOWS:
            step = len(starts) / SHARE_WINDOWS
            starts = [starts[int(i * step)] for i in range(SHARE_WINDOWS)]
        english = total = 0
        for start in starts:
            window = words[start:start + window_words]
            total += len(window)
            if self._model.classify(" ".join(window))[0] == "en":
                english += len(window)
        return english / total


def unread_language_reason(language: Language, model_languages: Iterable[str] = DEFAULT_MODEL_LANGUAGES) -> str | None:
    """Why a narrative must go to human review for its language, or None where the model reads it.

    ``model_languages``: ISO 639-1 codes of the languages the classifier reads (configured;
    English by default). An undetermined language is not one the model reads.
    """
    read = tuple(model_languages)
    if language.code in read:
        return None
    reads = ", ".join(f"{_NAMES.get(code, code)} ({code})" for code in read) or "no language"
    if language.code == UNDETERMINED_CODE:
        return f"the narrative's language could not be identified; the model reads {reads}"
    return (f"the narrative is in {language.name} ({language.code}, confidence {language.confidence}), "
            f"a language the model does not read; the model reads {reads}")
