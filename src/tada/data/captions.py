"""Captions in the style of real music captions, written from a clip's attributes.

Many templates and synonyms, attributes sometimes left out, instrument order shuffled:
a text encoder has to generalise over wording, not match strings. Genre synonyms never
borrow another genre's word ("latin" never says "jazz").
"""

from __future__ import annotations

import random
import re

from .attributes import ClipSpec

GENRE_WORDS = {
    "jazz": ("jazz", "jazz", "swing jazz", "cool jazz", "smooth jazz"),
    "rock": ("rock", "rock", "indie rock", "classic rock", "garage rock"),
    "classical": ("classical", "classical", "orchestral classical", "chamber music", "romantic-era classical"),
    "electronic": ("electronic", "electronic", "EDM", "electronica", "synth-driven electronic"),
    "pop": ("pop", "pop", "indie pop", "radio pop", "synth pop"),
    "hiphop": ("hip hop", "hip-hop", "boom bap hip hop", "hip hop"),
    "folk": ("folk", "folk", "acoustic folk", "americana folk"),
    "latin": ("latin", "latin", "salsa", "latin dance"),
}
MOOD_WORDS = {
    "major": ("happy", "cheerful", "uplifting", "bright", "joyful", "sunny", "feel-good"),
    "minor": ("sad", "melancholic", "dark", "somber", "gloomy", "moody", "wistful"),
}
FAST_WORDS = ("fast", "fast-paced", "energetic", "driving", "quick", "uptempo", "high-energy")
SLOW_WORDS = ("slow", "laid-back", "relaxed", "slow-paced", "unhurried", "gentle", "downtempo")
FAST_BPM, SLOW_BPM = 130, 85  # at or above: fast words; at or below: slow words
MID_WORDS = ("mid-tempo", "moderate-tempo", "steady", "medium-paced")
INSTRUMENT_WORDS = {
    "piano": ("piano", "grand piano", "acoustic piano", "piano chords"),
    "electric piano": ("electric piano", "rhodes", "electric keys"),
    "organ": ("organ", "hammond organ"),
    "acoustic guitar": ("acoustic guitar", "strummed acoustic guitar", "nylon-string guitar"),
    "electric guitar": ("electric guitar", "distorted electric guitar", "overdriven guitar", "electric guitar riffs"),
    "bass": ("bass", "bass guitar", "a bassline", "upright bass"),
    "synth bass": ("synth bass", "deep synth bass", "a synth bassline"),
    "violin": ("violin", "solo violin", "fiddle", "violin melody"),
    "cello": ("cello", "deep cello"),
    "strings": ("strings", "string section", "lush strings"),
    "trumpet": ("trumpet", "muted trumpet", "trumpet lead"),
    "brass": ("brass", "brass section", "horns"),
    "saxophone": ("saxophone", "sax", "tenor saxophone"),
    "clarinet": ("clarinet",),
    "flute": ("flute", "airy flute"),
    "harmonica": ("harmonica", "blues harp"),
    "synth lead": ("synth lead", "lead synthesizer", "bright synth lead"),
    "synth pad": ("synth pads", "warm pads", "ambient synth pad"),
    "drums": ("drums", "a drum kit", "punchy drums", "percussion"),
}
VOCAL_WORDS = {
    ("female", "sung"): ("female vocals", "a woman singing", "a female singer", "soft female voice", "female vocal"),
    ("male", "sung"): ("male vocals", "a man singing", "a male singer", "deep male voice", "male vocal"),
    ("female", "rap"): ("a female rapper", "a woman rapping", "female rap vocals", "rapped female verses"),
    ("male", "rap"): ("a male rapper", "a man rapping", "male rap vocals", "rapped male verses"),
}
NO_VOCALS = ("instrumental", "no vocals", "purely instrumental")

TEMPLATES = (
    "{mood} {genre} song with {instruments}{vocals_with}.",
    "A {tempo} {genre} track featuring {instruments}{vocals_and}.",
    "{genre}, {mood}, {tempo}, {instruments}{vocals_comma}",
    "This is a {mood} {genre} piece at {bpm} BPM. It features {instruments}{vocals_and}.",
    "{Instruments} play a {tempo}, {mood} {genre} tune{vocals_with}.",
    "A {mood} and {tempo} {genre} song in {key}, with {instruments}{vocals_and}.",
    "{tempo} {genre} music: {instruments}{vocals_comma}; the mood is {mood}.",
    "{genre} groove with {instruments}, {tempo} and {mood}{vocals_comma}",
    "{genre} song with {instruments}{vocals_with}.",
    "A {genre} track: {instruments}{vocals_comma}.",
    "The recording is a {genre} song. {Instruments} carry a {mood} feel at a {tempo} pace{vocals_sentence}",
    "{mood} {tempo} {genre} with {instruments}{vocals_with}",
)
_FIELD = re.compile(r"{(\w+)}")
_ARTICLE = re.compile(r"\b([Aa]) ([aeiouAEIOU])")
KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def _tempo_word(bpm: int, rng: random.Random) -> str:
    if bpm >= FAST_BPM:
        return rng.choice(FAST_WORDS)
    if bpm <= SLOW_BPM:
        return rng.choice(SLOW_WORDS)
    return rng.choice(MID_WORDS)


def with_articles(text: str) -> str:
    """ "a" before a vowel becomes "an"."""
    return _ARTICLE.sub(lambda m: m.group(1) + "n " + m.group(2), text)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(spec: ClipSpec, variant: int = 0) -> str:
    """A caption for ``spec``, fixed by its seed; other ``variant`` numbers give other wordings
    of the same attributes (variant 0 is the corpus's label)."""
    rng = random.Random(f"{spec.seed}-caption" + (f"-{variant}" if variant else ""))
    names = [n for n in spec.instruments if rng.random() < 0.9] or spec.instruments[:1]
    rng.shuffle(names)
    instruments = _join([rng.choice(INSTRUMENT_WORDS[n]) for n in names])
    if spec.vocals is not None and rng.random() < 0.92:
        voice = rng.choice(VOCAL_WORDS[(spec.vocals["gender"], spec.vocals["style"])])
        vocals = {
            "with": f" and {voice}",
            "and": f", plus {voice}",
            "comma": f", {voice}",
            "sentence": f". There is {voice}.",
        }
    elif spec.vocals is None and rng.random() < 0.5:
        word = rng.choice(NO_VOCALS)
        vocals = {"with": f", {word}", "and": f"; {word}", "comma": f", {word}", "sentence": f". It is {word}."}
    else:
        vocals = {"with": "", "and": "", "comma": "", "sentence": "."}
    fields = {
        "genre": rng.choice(GENRE_WORDS[spec.genre]),
        "mood": rng.choice(MOOD_WORDS[spec.mode]) if rng.random() < 0.85 else "",
        "tempo": _tempo_word(spec.bpm, rng) if rng.random() < 0.85 else "",
        "instruments": instruments,
        "Instruments": instruments[0].upper() + instruments[1:],
        "bpm": spec.bpm,
        "key": f"{KEYS[spec.tonic]} {spec.mode}",
        **{f"vocals_{k}": v for k, v in vocals.items()},
    }
    usable = [t for t in TEMPLATES if all(fields[name] for name in _FIELD.findall(t) if name in ("mood", "tempo"))]
    text = rng.choice(usable).format(**fields)
    text = with_articles(" ".join(text.split()))
    return text[0].upper() + text[1:]


# Short captions naming only some of a clip's attributes, as people often prompt ("dark
# jazz music", "a quick piece with violin"). They teach a model what one attribute does
# on its own, which long captions that name everything at once do not. Never the
# benchmark's decoration forms ("happy song, ...", "jazz song, ...").
SHORT_TEMPLATES = (
    "{mood} music",
    "{mood} {genre} music",
    "a {mood} piece with {instruments}",
    "{tempo} {genre} music",
    "a {tempo} piece",
    "music with {instruments}",
    "{mood} and {tempo} music",
    "a {genre} piece{vocals_with}",
    "{Instruments}{vocals_comma}",
    "a {mood} tune{vocals_with}",
    "{tempo} music with {instruments}",
    "a {mood}, {tempo} tune",
    "{genre} music",
    "music{vocals_with}",
)


def short_caption(spec: ClipSpec, variant: int = 0) -> str:
    """A short caption naming a few of ``spec``'s attributes and nothing untrue; fixed by
    the seed and ``variant``."""
    rng = random.Random(f"{spec.seed}-short-{variant}")
    names = rng.sample(spec.instruments, min(len(spec.instruments), rng.choice((1, 1, 2))))
    instruments = _join([rng.choice(INSTRUMENT_WORDS[n]) for n in names])
    if spec.vocals is not None:
        voice = rng.choice(VOCAL_WORDS[(spec.vocals["gender"], spec.vocals["style"])])
        vocals = {"with": f" with {voice}", "comma": f", {voice}"}
    else:
        word = rng.choice(NO_VOCALS)
        vocals = {"with": f", {word}", "comma": f", {word}"}
    fields = {
        "genre": rng.choice(GENRE_WORDS[spec.genre]),
        "mood": rng.choice(MOOD_WORDS[spec.mode]),
        "tempo": _tempo_word(spec.bpm, rng),
        "instruments": instruments,
        "Instruments": instruments[0].upper() + instruments[1:],
        **{f"vocals_{k}": v for k, v in vocals.items()},
    }
    text = with_articles(" ".join(rng.choice(SHORT_TEMPLATES).format(**fields).split()))
    return text[0].upper() + text[1:]
