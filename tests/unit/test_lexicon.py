"""The safety lexicon (deployments/core/lexicon.py, data/lexicon/): what it catches, what it must not.

Every phrase here was written for these tests. The true phrases are cases a counsellor must see at
once; the near-misses are everyday helpline text that uses the same stems (figurative, negated,
another sense of the word) and must not escalate. Timings live in ``python -m bench.lexicon``.
"""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from deployments.core.lexicon import BUNDLED_LEXICON_DIR, CATEGORIES, Lexicon, LexiconMatch

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.load()


# ----------------------------------------------------------------------------- true phrases

TRUE_EN = [
    ("She told the counsellor she wants to end her life.", "suicide_self_harm"),
    ("He has been cutting himself on the arms since June.", "suicide_self_harm"),
    ("The boy swallowed a whole packet of Panadol last night.", "suicide_self_harm"),
    ("My daughter drank rat poison after the results came out.", "suicide_self_harm"),
    ("i dont want to live anymore", "suicide_self_harm"),
    ("She wrote a goodbye note to her friends and switched off her phone.", "suicide_self_harm"),
    ("He tried to hang himself in the store behind the house.", "suicide_self_harm"),
    ("Her stepfather threatened to kill her if she reports him.", "weapon_threat"),
    ("Her uncle chased them with a panga last night.", "weapon_threat"),
    ("The neighbour stabbed him in the chest during the fight.", "weapon_threat"),
    ("He held a knife to her throat and took the phone.", "weapon_threat"),
    ("The watchman defiled the girl behind the church.", "sexual_abuse"),
    ("She was raped on her way home from the disco.", "sexual_abuse"),
    ("He touched her private parts when she was asleep.", "sexual_abuse"),
    ("Her teacher forced her to have sex in the staffroom.", "sexual_abuse"),
    ("He showed the children pornographic videos on his phone.", "sexual_abuse"),
    ("The baby was dumped in a pit latrine near the market.", "abandoned_confined"),
    ("The children were left alone for three days without food.", "abandoned_confined"),
    ("Her stepmother locked her in the store for two days.", "abandoned_confined"),
    ("He was chased from home by his uncle and has nowhere to sleep.", "abandoned_confined"),
    ("A woman promised her a job in Nairobi, then she was sold to a bar owner.", "trafficking_exploitation"),
    ("She is being sexually exploited at a lodging in town.", "trafficking_exploitation"),
    ("Men are trafficking girls across the border at night.", "trafficking_exploitation"),
    ("A man on Facebook asked her to send nude photos.", "trafficking_exploitation"),
    ("Her father wants to marry her off to a man of sixty.", "forced_marriage"),
    ("The parents have already received the dowry and the wedding is on Saturday.", "forced_marriage"),
    ("They are forcing her into an early marriage.", "forced_marriage"),
    ("Our son has been missing since Tuesday evening.", "missing_child"),
    ("She did not come back from the river yesterday.", "missing_child"),
    ("The girl was abducted by two men on a motorbike.", "missing_child"),
    ("She was last seen wearing a green sweater near the stage.", "missing_child"),
    ("They plan to take her for FGM in December.", "fgm"),
    ("The girls will be cut during the August holidays.", "fgm"),
    ("Her grandmother insists on female circumcision before she marries.", "fgm"),
]

TRUE_SW = [
    ("Amesema anataka kujiua.", "suicide_self_harm"),
    ("Alijaribu kujinyonga chumbani.", "suicide_self_harm"),
    ("Mtoto alikunywa sumu ya panya jana usiku.", "suicide_self_harm"),
    ("Alimeza vidonge vingi baada ya mtihani.", "suicide_self_harm"),
    ("Nimechoka na maisha.", "suicide_self_harm"),
    ("Sitaki kuishi tena.", "suicide_self_harm"),
    ("Baba yake alitishia kumuua.", "weapon_threat"),
    ("Alimchoma kisu tumboni.", "weapon_threat"),
    ("Walimpiga kwa panga usiku.", "weapon_threat"),
    ("Alipigwa risasi na majambazi.", "weapon_threat"),
    ("Nitakuua!", "weapon_threat"),
    ("Alibakwa na jirani yao.", "sexual_abuse"),
    ("Mjomba wake alimbaka.", "sexual_abuse"),
    ("Mwalimu alimnajisi msichana huyo.", "sexual_abuse"),
    ("Alimshika sehemu za siri.", "sexual_abuse"),
    ("Alipachikwa mimba na mwalimu wake.", "sexual_abuse"),
    ("Mtoto ametelekezwa na wazazi wake.", "abandoned_confined"),
    ("Mtoto mchanga alitupwa chooni.", "abandoned_confined"),
    ("Amefungiwa ndani ya nyumba kwa wiki mbili.", "abandoned_confined"),
    ("Alifukuzwa nyumbani na mama wa kambo.", "abandoned_confined"),
    ("Hana mtu wa kumtunza.", "abandoned_confined"),
    ("Aliuzwa kwa mfanyabiashara mjini.", "trafficking_exploitation"),
    ("Anafanyiwa biashara ya ngono.", "trafficking_exploitation"),
    ("Wanawatumikisha watoto shambani.", "trafficking_exploitation"),
    ("Aliahidiwa kazi Dubai na wakala.", "trafficking_exploitation"),
    ("Wanataka kumuoza kwa mzee.", "forced_marriage"),
    ("Ataozwa mwezi ujao.", "forced_marriage"),
    ("Wazazi wamepokea mahari.", "forced_marriage"),
    ("Analazimishwa kuolewa.", "forced_marriage"),
    ("Hiyo ni ndoa ya lazima.", "forced_marriage"),
    ("Mtoto wetu amepotea tangu jana.", "missing_child"),
    ("Hajulikani aliko.", "missing_child"),
    ("Ametekwa nyara.", "missing_child"),
    ("Hajarudi nyumbani tangu Jumatatu.", "missing_child"),
    ("Wanapanga kumkeketa likizo hii.", "fgm"),
    ("Amekeketwa wiki iliyopita.", "fgm"),
    ("Tohara ya wasichana itafanyika Desemba.", "fgm"),
]

TRUE_SHENG = [
    ("Ameniambia anataka kujimaliza.", "suicide_self_harm"),
    ("Nataka kudie, sina mtu.", "suicide_self_harm"),
    ("Alimeza mapills mob jana.", "suicide_self_harm"),
    ("Nilijaribu kujikill.", "suicide_self_harm"),
    ("Buda alimstab na kisu.", "weapon_threat"),
    ("Alishootiwa na makarao.", "weapon_threat"),
    ("Nitakukill ukisema.", "weapon_threat"),
    ("Alimthreaten kumkill.", "weapon_threat"),
    ("Alimrape kwa keja yake.", "sexual_abuse"),
    ("Amerapiwa na jamaa wa mtaa.", "sexual_abuse"),
    ("Alidefiliwa na mjomba.", "sexual_abuse"),
    ("Alinitouch pabaya.", "sexual_abuse"),
    ("Alimpeleka lodging.", "sexual_abuse"),
    ("Alimforce kulala naye.", "sexual_abuse"),
    ("Amelockiwa ndani ya keja siku tatu.", "abandoned_confined"),
    ("Mathe alimdump kwa shosh.", "abandoned_confined"),
    ("Ni chokora tu, anaishi town.", "abandoned_confined"),
    ("Ako na sponsa anamlipia keja.", "trafficking_exploitation"),
    ("Wanasell mwili town.", "trafficking_exploitation"),
    ("Walimtraffick hadi Mombasa.", "trafficking_exploitation"),
    ("Wanamforce aolewe na buda mmoja.", "forced_marriage"),
    ("Wanataka kumforce kumarry mzee.", "forced_marriage"),
    ("Amehepa home tangu Ijumaa.", "missing_child"),
    ("Dem wangu amedisappear tangu jana.", "missing_child"),
    ("Wanataka kumcircumcise dem wao.", "fgm"),
    ("Wanapanga kumfanyia FGM.", "fgm"),
]

TRUE = {"en": TRUE_EN, "sw": TRUE_SW, "sheng": TRUE_SHENG}


@pytest.mark.parametrize("language,text,category",
                         [(lang, t, c) for lang, rows in TRUE.items() for t, c in rows])
def test_a_true_phrase_escalates_under_its_category_and_language(lexicon, language, text, category):
    found = {(m.category, m.language) for m in lexicon.match(text)}
    assert (category, language) in found, f"{text!r}: {found}"


@pytest.mark.parametrize("language", sorted(TRUE))
def test_at_least_twenty_true_phrases_and_every_category_per_language(language):
    rows = TRUE[language]
    assert len(rows) >= 20
    assert {c for _, c in rows} == set(CATEGORIES)


# ----------------------------------------------------------------------------- near-misses

NEAR_EN = [
    "That comedian on the radio killed me with his jokes about matatus.",
    "She killed it on stage at the music festival.",
    "My back was killing me after carrying water all day.",
    "We were just killing time at the bus stage until the matatu filled up.",
    "He nearly killed himself laughing at the video.",
    "She is killing herself studying for KCPE.",
    "Mum says she will kill me if I come home late again.",
    "The boy cut himself while peeling potatoes.",
    "She took her ARV tablets as the nurse prescribed.",
    "The nurse gave her a shot at the clinic.",
    "He shot her a dirty look across the classroom.",
    "They were shooting a music video for the school club.",
    "My best friend stabbed me in the back by telling my secrets.",
    "Dad chopped the firewood with an axe before the rains.",
    "She cut the sukuma wiki with a knife for supper.",
    "The land was sold to a neighbour to pay school fees.",
    "He sold her a second-hand phone for 2,000 shillings.",
    "She is missing school because the fees are not paid.",
    "He is missing his mother who works in Dubai.",
    "My phone went missing at the market.",
    "The project was abandoned after the funds ran out.",
    "He locked himself in his room after the argument.",
    "The goats are kept in a shed at night.",
    "The anti-FGM club at school held an awareness day.",
    "We watched a documentary about child marriage in class.",
    "My elder sister's dowry was paid last December.",
    "The dog ran away from home during the storm.",
    "She denies any suicidal thoughts and is eating well.",
    "The hospital ran a suicide prevention training for nurses.",
    "Cancer killed her mother two years ago.",
    "The coach said she will be cut from the team this December.",
    "She was thrown out of the game for a foul.",
    "The police said the drug trafficking ring was arrested.",
    "Traffic on Mombasa Road made us late for church.",
    "He pimped his bike with new lights.",
    "She left her bag alone on the bus for a few minutes.",
]

NEAR_SW = [
    "Tulikuwa tunaua muda kwenye kituo cha basi.",
    "Hatutaki kuua muda, tuanze kazi.",
    "Kibaka aliiba simu yangu sokoni.",
    "Ana mabaka usoni kwa sababu ya jua.",
    "Alibaki nyumbani kusoma.",
    "Alienda kuteka maji mtoni.",
    "Nyama imeoza kwa sababu ya joto.",
    "Meno yake yanaoza.",
    "Umepotea sana rafiki yangu!",
    "Simu yangu imepotea.",
    "Ng'ombe wetu amepotea tangu jana.",
    "Tuliwaua mende wote jikoni.",
    "Alikata kuni kwa shoka.",
    "Mama alichoma mahindi jikoni.",
    "Nimekufa na njaa leo.",
    "Sitaki kuishi na mama wa kambo.",
    "Nimechoka na maisha ya shule.",
    "Alifungwa jela miaka mitatu.",
    "Amefukuzwa shule kwa sababu ya karo.",
    "Shamba limeuzwa.",
    "Anauza mandazi sokoni.",
    "Dada yangu mkubwa analipiwa mahari mwezi ujao.",
    "Kampeni ya kupinga ukeketaji ilifanyika shuleni.",
    "Tohara ya wavulana ni desturi yetu.",
    "Alijikata kidole akipika.",
    "Hana mawazo ya kujiua.",
    "Unaniua na vichekesho vyako!",
    "Alitekwa na uzuri wake.",
    "Hajarudi shuleni tangu likizo.",
    "Anaamua kwenda sokoni.",
]

NEAR_SHENG = [
    "Alishoot video ya TikTok.",
    "Tulishoot music video jana.",
    "Walimshoot picha kwa harusi.",
    "Ameikill stage vibaya sana.",
    "Hiyo beat inanikill.",
    "Unanikill na jokes zako.",
    "Nilifeel kudie na kicheko.",
    "Alihepa class ya hesabu.",
    "Nililockiwa nje ya keja.",
    "Simu yangu imelock.",
    "Sponsa wa shule amelipa fees.",
    "Alimforce kulala mapema.",
    "Alicut nywele zake.",
    "Boy alicircumcisiwa mwezi jana.",
    "Nimedisappear kwa group ya WhatsApp.",
    "Umedisappear sana bro!",
    "Alimdump dem wake.",
    "Ako na chuma kwa garage.",
    "Nitakumaliza kwa FIFA leo.",
    "Tulikuwa tunachill kwa keja.",
    "Alikuwa na mapills za malaria, alimeza moja.",
    "Anasell mitumba town.",
]

NEAR = {"en": NEAR_EN, "sw": NEAR_SW, "sheng": NEAR_SHENG}


@pytest.mark.parametrize("text", [t for rows in NEAR.values() for t in rows])
def test_a_near_miss_does_not_escalate(lexicon, text):
    assert lexicon.match(text) == [], [(m.entry_id, m.text) for m in lexicon.match(text)]


@pytest.mark.parametrize("language", sorted(NEAR))
def test_at_least_twenty_near_misses_per_language(language):
    assert len(NEAR[language]) >= 20


def test_the_anchors_never_change_the_result(lexicon):
    """The cheap first look (anchors, windows) finds what running every pattern everywhere finds."""
    texts = [t for rows in TRUE.values() for t, _ in rows] + [t for rows in NEAR.values() for t in rows]
    texts.append(" ".join(texts))
    for text in texts:
        assert lexicon.match(text) == lexicon.match(text, exhaustive=True), text


# ----------------------------------------------------------------------------- offsets and shape

@pytest.mark.parametrize("narrative,expected", [
    ("CALLER says:   her UNCLE   Threatened, to KILL her!!", "Threatened, to KILL her"),
    ("Note 3/4 -- the girl...\n\n  was   RAPED   last week", "RAPED"),
    ("(Mtoto)  ALIBAKWA  na jirani.", "ALIBAKWA"),
    ("Case 17: mtoto  AMEPOTEA  tangu jana", "AMEPOTEA"),
    ("ref#22 -- Alimeza   VIDONGE\tvingi...", "Alimeza   VIDONGE\tvingi"),
    ("“She wants to END HER LIFE”, said the aunt.", "END HER LIFE"),
    ("Asked if ok; she said I don’t want to live anymore.", "don’t want to live"),
    ("wanamforce   AOLEWE  na mzee", "wanamforce   AOLEWE"),
])
def test_offsets_point_into_the_narrative_as_sent(lexicon, narrative, expected):
    matches = lexicon.match(narrative)
    assert [m.text for m in matches] == [expected]
    m = matches[0]
    assert narrative[m.start:m.end] == m.text
    assert m.start == narrative.index(expected)


def test_matches_are_sorted_and_never_overlap(lexicon):
    narrative = ("The girl was abducted on Monday. Later he threatened to kill her, and she says she wants to "
                 "die. Mtoto alibakwa na ametekwa nyara; amepotea tangu jana.")
    matches = lexicon.match(narrative)
    assert len(matches) >= 5
    assert [m.start for m in matches] == sorted(m.start for m in matches)
    for a, b in zip(matches, matches[1:]):
        assert a.end <= b.start
    for m in matches:
        assert narrative[m.start:m.end] == m.text


def test_a_figurative_use_beside_a_real_threat_leaves_only_the_threat(lexicon):
    narrative = "My back was killing me all week, and last night her father said he will kill her."
    assert [(m.category, m.text) for m in lexicon.match(narrative)] == [("weapon_threat", "will kill her")]


def test_a_signal_carries_the_source_category_words_and_offsets(lexicon):
    narrative = "Yesterday she tried to kill herself."
    (m,) = lexicon.match(narrative)
    assert isinstance(m, LexiconMatch)
    assert m.to_signal() == {"source": "lexicon", "category": "suicide_self_harm", "text": "tried to kill herself",
                             "start": 14, "end": 35}
    assert m.entry_id == "en.suicide.kill_self" and m.language == "en"


def test_empty_and_plain_text_match_nothing(lexicon):
    assert lexicon.match("") == []
    assert lexicon.match("   \n\t ") == []
    assert lexicon.match("The caller asked for the helpline's opening hours.") == []


def test_a_character_that_lowers_to_two_keeps_offsets_right(lexicon):
    narrative = "İİİ: at the İstanbul market the man STABBED HER"
    assert len(narrative.lower()) != len(narrative)
    (m,) = lexicon.match(narrative)
    assert narrative[m.start:m.end] == m.text == "STABBED HER"


def test_nothing_is_logged(lexicon, caplog):
    with caplog.at_level(logging.DEBUG):
        lexicon.match("She was raped and wants to die.")
        Lexicon.load()
    assert caplog.records == []


# ----------------------------------------------------------------------------- what it holds

def test_size_counts_entries_per_language_and_category(lexicon):
    sizes = lexicon.size()
    assert set(sizes) == {"en", "sw", "sheng"}
    for language, per_category in sizes.items():
        assert list(per_category) == list(CATEGORIES)
        assert all(n >= 1 for n in per_category.values()), (language, per_category)
    assert sum(sum(v.values()) for v in sizes.values()) == len(lexicon.entries)
    assert lexicon.categories == CATEGORIES


def test_every_bundled_entry_records_the_harm_of_a_false_alarm():
    for path in sorted(BUNDLED_LEXICON_DIR.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["entries"]:
            assert len(entry["false_alarm"].split()) >= 8, (path.name, entry["id"])


def test_every_bundled_pattern_has_anchors(lexicon):
    assert not lexicon._unanchored


# ----------------------------------------------------------------------------- a country's own file

UGANDA = {
    "language": "en-UG",
    "macros": {"CHILD": "girl|boy|child|pupil"},
    "exclude": ["kwanjula (?:party|photos)"],
    "entries": [{
        "id": "ug.marriage.kwanjula",
        "category": "forced_marriage",
        "patterns": ["(?:{CHILD}) {~6}kwanjula", "kwanjula {~4}(?:{CHILD})"],
        "false_alarm": "A family introduction ceremony for an adult daughter costs a review; for a girl it "
                       "means the marriage is close.",
    }],
}


def test_an_extra_country_file_adds_its_matches(tmp_path, lexicon):
    path = tmp_path / "ug.yaml"
    path.write_text(yaml.safe_dump(UGANDA), encoding="utf-8")
    narrative = "The girl, 14, is being prepared for the kwanjula next month."
    assert lexicon.match(narrative) == []
    both = Lexicon.load([path])
    (m,) = both.match(narrative)
    assert (m.category, m.language, m.entry_id) == ("forced_marriage", "en-UG", "ug.marriage.kwanjula")
    assert both.match("Her uncle stabbed him.") and both.size()["en-UG"]["forced_marriage"] == 1
    assert both.match("They showed us the kwanjula photos of the girl.") == []


def test_a_file_alone_replaces_the_bundled_ones(tmp_path):
    path = tmp_path / "ug.json"
    path.write_text(json.dumps(UGANDA), encoding="utf-8")
    alone = Lexicon.load([path], bundled=False)
    assert alone.languages == ("en-UG",)
    assert alone.match("Her uncle stabbed him.") == []
    assert alone.match("The pupil's kwanjula is on Saturday.")


def test_a_folder_loads_every_file_in_it(tmp_path):
    (tmp_path / "ug.yaml").write_text(yaml.safe_dump(UGANDA), encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a lexicon", encoding="utf-8")
    assert Lexicon.load([tmp_path], bundled=False).languages == ("en-UG",)


def test_a_country_file_can_disable_a_bundled_entry(tmp_path, lexicon):
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump({"language": "en", "entries": [], "disable": ["en.sexual.rape"]}), encoding="utf-8")
    assert lexicon.match("She was raped.")
    assert Lexicon.load([path]).match("She was raped.") == []


def test_no_file_at_all_is_refused():
    with pytest.raises(ValueError, match="no lexicon file"):
        Lexicon.load([], bundled=False)


# ----------------------------------------------------------------------------- a bad file

def _entry(**changes) -> dict:
    entry = {"id": "x.one", "category": "fgm", "patterns": ["cutting season"], "false_alarm": "cheap review"}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize("document,message,names_entry", [
    ({"language": "xx", "entries": [_entry(category="bullying")]}, "unknown category 'bullying'", True),
    ({"language": "xx", "entries": [_entry(patterns=["(unclosed"])]}, "does not compile", True),
    ({"language": "xx", "entries": [_entry(false_alarm=None)]}, "no 'false_alarm'", True),
    ({"language": "xx", "entries": [_entry(false_alarm="  ")]}, "no 'false_alarm'", True),
    ({"language": "xx", "entries": [_entry(patterns=["(a|b) c"])]}, "capturing group", True),
    ({"language": "xx", "entries": [_entry(patterns=["{NOPE} x"])]}, "unknown macro", True),
    ({"language": "xx", "entries": [_entry(patterns=["x?"])]}, "empty string", True),
    ({"language": "xx", "entries": [_entry(patterns=[])]}, "'patterns' is empty", True),
    ({"language": "xx", "entries": [_entry(excludes=["a"])]}, "unknown key", True),
    ({"language": "xx", "entries": [_entry(), _entry()]}, "already used", True),
    ({"language": "xx", "entries": [_entry(exclude=["[z-a]"])]}, "does not compile", True),
    ({"language": "xx", "exclude": ["(?P<x"], "entries": [_entry()]}, "does not compile", False),
    ({"language": "xx", "entries": [_entry()], "disable": ["nope.entry"]}, "disable names 'nope.entry'", False),
    ({"entries": [_entry()]}, "'language'", False),
    ({"language": "xx", "entries": "x"}, "'entries' must be a list", False),
])
def test_a_bad_file_fails_naming_the_file_and_the_entry(tmp_path, document, message, names_entry):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        Lexicon.load([path], bundled=False)
    text = str(err.value)
    assert message in text and "bad.yaml" in text
    assert ("x.one" in text) == names_entry


def test_a_file_that_is_not_yaml_fails_naming_it(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("language: [en\nentries: -", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.yaml"):
        Lexicon.load([path], bundled=False)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        Lexicon.load([tmp_path / "nowhere.yaml"])
