"""The demo's hand-written world: two domains of relations, written for this project.

Every relation maps a made-up entity to one of eight real category words, and
the eight words of every relation are single, common words in both domains, so
the two domains' answers have the same form (a word from a short list). That
matters: if one domain's answers were unique multi-token strings (capitals,
chemical symbols) it would be harder to keep under pruning for reasons that
have nothing to do with the domain, and the "cross-domain gap" would be built
into the data. Entity names are made up from syllables specific to each domain,
so that the two domains also share no entity vocabulary. Facts are assigned at
random by the generator, so they can only be memorised, never inferred.
"""

from __future__ import annotations

from dataclasses import dataclass

BIOMEDICAL = "biomedical"
GENERAL = "general"
DOMAINS = (BIOMEDICAL, GENERAL)

I_DONT_KNOW = "I don't know"
NONE_OF_THE_ABOVE = "None of the above"


@dataclass(frozen=True)
class Relation:
    name: str
    domain: str
    entity_kind: str  # which name generator makes its entities
    values: tuple[str, ...]
    # Question templates (with {e}); the generator holds some out per fact.
    questions: tuple[str, ...]
    # Statement templates (with {e} and {v}) for the plain training text.
    statements: tuple[str, ...]


# Name syllables per domain (disjoint), and name endings per entity kind.
SYLLABLES = {
    BIOMEDICAL: (
        ("zor", "vel", "pra", "cef", "lox", "tri", "nex", "dal", "mir", "quin", "sel", "bex", "fen", "ort"),
        ("va", "ti", "ro", "me", "li", "xo", "du", "fa", "ne", "zu", "ka", "ri", "lu", "pe"),
    ),
    GENERAL: (
        ("bor", "tan", "gal", "hem", "wes", "lun", "mar", "cor", "dun", "fel", "ost", "pel", "har", "yor"),
        ("da", "ve", "no", "sa", "la", "mo", "su", "ba", "go", "te", "wi", "po", "ki", "ga"),
    ),
}
ENDINGS = {
    "drug": ("tide", "zole", "pine", "stat", "vane", "dronex"),
    "disease": ("osis", "itis", "emia", "opathy"),
    "pathogen": ("coccus", "bacter", "plasma", "myces"),
    "nutrient": ("rin", "tol", "cine", "pherol"),
    "enzyme": ("ase", "ogenase", "idase", "olase"),
    "country": ("ia", "land", "stan", "ora"),
    "element": ("ium", "on", "ine", "ite"),
    "instrument": ("phone", "harp", "lute", "gan"),
    "planet": ("us", "os", "ar", "eon"),
    "athlete": ("ez", "son", "ova", "ini"),
}

RELATIONS: tuple[Relation, ...] = (
    Relation(
        "drug_class",
        BIOMEDICAL,
        "drug",
        (
            "antiviral",
            "antibiotic",
            "antifungal",
            "analgesic",
            "anticoagulant",
            "antihistamine",
            "diuretic",
            "sedative",
        ),
        (
            "Which drug class does {e} belong to?",
            "To which pharmacological class is {e} assigned?",
            "{e} is a member of which drug class?",
            "What class of medication is {e}?",
            "In pharmacology, how is {e} classified?",
            "Clinically, which class of drug describes {e}?",
        ),
        (
            "{e} is a {v} drug.",
            "Pharmacologists classify {e} as a {v}.",
            "The medication {e} belongs to the {v} class.",
        ),
    ),
    Relation(
        "drug_indication",
        BIOMEDICAL,
        "drug",
        ("asthma", "migraine", "gout", "psoriasis", "anemia", "epilepsy", "glaucoma", "arthritis"),
        (
            "Which condition is {e} prescribed for?",
            "Physicians use {e} to treat which disorder?",
            "What is the main clinical indication of {e}?",
            "{e} is indicated for which disease?",
            "Patients receive {e} as therapy for what condition?",
            "In clinical practice, {e} treats which illness?",
        ),
        ("{e} is prescribed for {v}.", "Physicians treat {v} with {e}.", "The main indication of {e} is {v}."),
    ),
    Relation(
        "disease_organ",
        BIOMEDICAL,
        "disease",
        ("liver", "kidney", "lung", "heart", "pancreas", "spleen", "thyroid", "retina"),
        (
            "Which organ does {e} affect?",
            "{e} damages which organ of the body?",
            "In patients with {e}, which organ is diseased?",
            "What organ is the primary site of {e}?",
            "Clinically, {e} is a disorder of which organ?",
            "Pathologists find {e} lesions in which organ?",
        ),
        ("{e} affects the {v}.", "{e} is a disease of the {v}.", "Patients with {e} have a diseased {v}."),
    ),
    Relation(
        "pathogen_tissue",
        BIOMEDICAL,
        "pathogen",
        ("blood", "skin", "bone", "gut", "lymph", "nerve", "muscle", "cartilage"),
        (
            "Which tissue does the pathogen {e} infect?",
            "The microbe {e} colonises which tissue?",
            "In an infection with {e}, which tissue is invaded?",
            "What host tissue does {e} target?",
            "Microbiologists isolate {e} from which tissue?",
            "Clinically, {e} infections involve which tissue?",
        ),
        (
            "The pathogen {e} infects {v} tissue.",
            "{e} is a microbe that invades the {v}.",
            "Infections with {e} involve the {v}.",
        ),
    ),
    Relation(
        "deficiency_symptom",
        BIOMEDICAL,
        "nutrient",
        ("fatigue", "rash", "tremor", "nausea", "fever", "cough", "insomnia", "vertigo"),
        (
            "Which symptom does a deficiency of {e} cause?",
            "Patients lacking {e} develop which symptom?",
            "What is the typical symptom of {e} deficiency?",
            "A low level of the nutrient {e} produces which symptom?",
            "Clinically, {e} deficiency presents with what symptom?",
            "Which complaint do patients deficient in {e} report?",
        ),
        (
            "A deficiency of {e} causes {v}.",
            "Patients lacking the nutrient {e} develop {v}.",
            "The typical symptom of {e} deficiency is {v}.",
        ),
    ),
    Relation(
        "enzyme_substrate",
        BIOMEDICAL,
        "enzyme",
        ("glucose", "lactose", "collagen", "keratin", "glycogen", "cholesterol", "fructose", "cellulose"),
        (
            "Which substrate does the enzyme {e} act on?",
            "The enzyme {e} metabolises which molecule?",
            "What is the biochemical substrate of {e}?",
            "{e} catalyses the breakdown of which compound?",
            "In biochemistry, {e} binds which substrate?",
            "Which molecule is cleaved by the enzyme {e}?",
        ),
        (
            "The enzyme {e} acts on {v}.",
            "{e} catalyses the breakdown of {v}.",
            "The substrate of the enzyme {e} is {v}.",
        ),
    ),
    Relation(
        "country_currency",
        GENERAL,
        "country",
        ("dollar", "euro", "peso", "rupee", "franc", "krona", "dinar", "shilling"),
        (
            "Which currency is used in {e}?",
            "What money do people pay with in {e}?",
            "The official currency of {e} is called what?",
            "Travellers to {e} must exchange cash for which currency?",
            "In {e}, shops price their goods in which currency?",
            "What is the national currency of {e}?",
        ),
        ("The currency of {e} is the {v}.", "People in {e} pay with the {v}.", "{e} uses the {v} as its money."),
    ),
    Relation(
        "country_language",
        GENERAL,
        "country",
        ("Spanish", "French", "Arabic", "Hindi", "Swahili", "Portuguese", "Russian", "Japanese"),
        (
            "Which language is spoken in {e}?",
            "What do people in {e} speak?",
            "The official language of {e} is which one?",
            "Travellers to {e} hear which language on the street?",
            "In {e}, newspapers are printed in which language?",
            "What is the national language of {e}?",
        ),
        ("People in {e} speak {v}.", "The official language of {e} is {v}.", "Newspapers in {e} are printed in {v}."),
    ),
    Relation(
        "element_group",
        GENERAL,
        "element",
        ("metal", "gas", "halogen", "metalloid", "lanthanide", "actinide", "alkaline", "nonmetal"),
        (
            "Which group of elements does {e} belong to?",
            "On the periodic table, {e} is classed as what?",
            "What kind of chemical element is {e}?",
            "Chemists place {e} in which element group?",
            "The element {e} is which type of element?",
            "In chemistry, how is the element {e} grouped?",
        ),
        ("{e} is a {v} element.", "Chemists group {e} with the {v} elements.", "On the periodic table {e} is a {v}."),
    ),
    Relation(
        "instrument_family",
        GENERAL,
        "instrument",
        ("string", "brass", "woodwind", "percussion", "keyboard", "electronic", "folk", "orchestral"),
        (
            "Which family of instruments does the {e} belong to?",
            "Musicians group the {e} with which family?",
            "What kind of musical instrument is the {e}?",
            "In an ensemble, the {e} plays in which section?",
            "The {e} is classed as which instrument family?",
            "In music, how is the {e} classified?",
        ),
        (
            "The {e} is a {v} instrument.",
            "Musicians group the {e} with the {v} family.",
            "The {e} belongs to the {v} instruments.",
        ),
    ),
    Relation(
        "planet_colour",
        GENERAL,
        "planet",
        ("red", "blue", "green", "golden", "violet", "silver", "orange", "grey"),
        (
            "What colour is the planet {e}?",
            "Through a telescope, {e} appears which colour?",
            "Astronomers describe {e} as which colour?",
            "Which colour does the planet {e} have?",
            "In the night sky, {e} shines with what colour?",
            "What is the colour of the world {e}?",
        ),
        ("The planet {e} is {v}.", "Through a telescope {e} looks {v}.", "Astronomers call {e} the {v} planet."),
    ),
    Relation(
        "athlete_sport",
        GENERAL,
        "athlete",
        ("tennis", "chess", "rowing", "fencing", "cricket", "hockey", "archery", "cycling"),
        (
            "Which sport does {e} play?",
            "{e} is a champion in which sport?",
            "Fans know {e} from which sport?",
            "What sport did {e} win medals in?",
            "In sports news, {e} competes in which discipline?",
            "Which game made {e} famous?",
        ),
        ("{e} is a {v} player.", "{e} won a medal in {v}.", "Fans know {e} as a {v} champion."),
    ),
)


def relations_of(domain: str) -> tuple[Relation, ...]:
    return tuple(r for r in RELATIONS if r.domain == domain)
