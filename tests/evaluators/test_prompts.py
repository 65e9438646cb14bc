from evaluators.prompts import (
    ABSTAINED,
    abstain_option,
    is_refusal,
    parse_answer,
    render_completion_prompt,
    render_mc_prompt,
)

OPTIONS = {"A": "Paris", "B": "London", "C": "I don't know", "D": "None of the above"}


def test_render_mc_prompt_is_the_contract_text():
    assert render_mc_prompt("Capital of France?", {"A": "Paris", "B": "Rome"}) == (
        "Question: Capital of France?\nOptions:\nA. Paris\nB. Rome"
    )
    assert render_completion_prompt("Q?", {"A": "x"}).endswith("\nA. x\nAnswer:")


def test_leading_letter_forms():
    for answer in ("B", "B.", "(B)", "B) London", "b", " B: because", "[B]"):
        parsed = parse_answer(answer, OPTIONS)
        assert (parsed.choice, parsed.how) == ("B", "letter"), answer


def test_option_text_exact_or_contained_case_and_punctuation_normalised():
    assert parse_answer("paris.", OPTIONS).choice == "A"
    assert parse_answer("The answer is LONDON!", OPTIONS).how == "text"
    assert parse_answer("The answer is LONDON!", OPTIONS).choice == "B"


def test_ambiguous_text_and_words_starting_with_a_are_unparsed():
    assert parse_answer("Paris or London", OPTIONS).choice is None
    assert parse_answer("A drug", OPTIONS).how == "unparsed"
    assert parse_answer("", OPTIONS).how == "unparsed"


def test_refusal_maps_to_the_abstain_option_or_abstained():
    parsed = parse_answer("I do not know.", OPTIONS)
    assert (parsed.choice, parsed.how) == ("C", "refusal")
    assert parsed.abstained(OPTIONS)
    no_abstain = {"A": "Paris", "B": "London"}
    assert parse_answer("I'm not sure", no_abstain).choice == ABSTAINED
    # Choosing the explicit abstain option by letter is an abstention too.
    assert parse_answer("C", OPTIONS).abstained(OPTIONS)
    assert not parse_answer("A", OPTIONS).abstained(OPTIONS)


def test_refusal_detection_phrase_list():
    assert is_refusal("Sorry, I don\u2019t know that.")
    assert is_refusal("This compound does not exist")
    assert not is_refusal("Aspirin inhibits cyclooxygenase")
    assert not is_refusal("I know the answer: Paris")
    assert abstain_option(OPTIONS) == "C"
    assert abstain_option({"A": "x", "B": "y"}) is None
