import math

import pytest

from ragtune.evaluation.dialogue_metrics import bleu, char_f1, contains_value, distinct
from ragtune.kg.graph import units

# Hypothesis 我喜欢北京 = 我 喜 欢 北 京 (5 units); reference 我很喜欢北京 = 我 很 喜 欢 北 京 (6 units).
HYP, REF = "我喜欢北京", "我很喜欢北京"


def test_bleu_1_and_2_by_hand_with_brevity_penalty():
    # unigrams: all 5 hypothesis characters occur in the reference -> p1 = 5/5.
    # bigrams: 我喜 喜欢 欢北 北京; the reference has 喜欢 欢北 北京 (not 我喜) -> p2 = 3/4.
    # c = 5 <= r = 6 -> brevity penalty exp(1 - 6/5) = exp(-0.2) = 0.818731.
    assert bleu([HYP], [REF], 1) == pytest.approx(math.exp(-0.2))  # 0.818731 * 1
    assert bleu([HYP], [REF], 2) == pytest.approx(math.exp(-0.2) * math.sqrt(3 / 4))  # 0.709042


def test_bleu_clips_repeated_units_and_has_no_penalty_when_longer():
    # 好好好 against 好的: 好 counted at most once (the reference has one) -> p1 = 1/3; c = 3 > r = 2 -> BP 1.
    assert bleu(["好好好"], ["好的"], 1) == pytest.approx(1 / 3)


def test_bleu_is_zero_when_an_order_has_no_match():
    # bigrams 好好 好好 against 好的: no match, and without smoothing the geometric mean is 0.
    assert bleu(["好好好"], ["好的"], 2) == 0.0
    assert bleu(["北京"], ["上海"], 1) == 0.0
    assert bleu([""], ["上海"], 1) == 0.0


def test_bleu_sums_counts_over_the_corpus_before_dividing():
    # p1 = (5 + 1) / (5 + 3) = 3/4; p2 = (3 + 0) / (4 + 2) = 1/2; c = 8 = r = 8 -> BP exp(0) = 1.
    # BLEU-2 = sqrt(3/4 * 1/2) = sqrt(0.375) = 0.612372 (the mean of sentence scores would differ: one is 0).
    assert bleu([HYP, "好好好"], [REF, "好的"], 2) == pytest.approx(math.sqrt(0.375))


def test_bleu_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        bleu(["a"], [], 1)
    with pytest.raises(ValueError):
        bleu(["a"], ["a"], 0)


def test_bleu_agrees_with_nltk_corpus_bleu():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    hyps = ["知道呀，是首都重要的演出场所之一。", "它在北京市西城区。", "门票价格是六十元，学生半价。"]
    refs = ["知道，是首都重要的演出场所。", "它位于北京市东城区。", "门票六十元，学生有优惠。"]
    for n in (1, 2, 3, 4):
        expected = nltk_bleu.corpus_bleu([[units(r)] for r in refs], [units(h) for h in hyps],
                                         weights=(1 / n,) * n)
        assert bleu(hyps, refs, n) == pytest.approx(expected)


def test_char_f1_counts_characters():
    # 北京很美 vs 北京真美丽: common 北 京 美 = 3; P = 3/4, R = 3/5; F1 = 2 * 0.75 * 0.6 / 1.35 = 2/3.
    assert char_f1("北京很美", "北京真美丽") == pytest.approx(2 / 3)
    # punctuation is not a unit and width is folded (NFKC): same units.
    assert char_f1("北京，很美！", "北京很美") == 1.0
    assert char_f1("上海", "北京") == 0.0


def test_char_f1_empty_cases():
    assert char_f1("", "北京") == 0.0
    assert char_f1("北京", "") == 0.0
    assert char_f1("", "") == 1.0


def test_distinct_1_and_2():
    # units: 你 好 你 好 | 你 好 -> 6 unigrams, 2 distinct (你 好) -> 1/3.
    # bigrams (not across texts): 你好 好你 你好 | 你好 -> 4, distinct 你好 好你 -> 2/4.
    assert distinct(["你好你好", "你好"], 1) == pytest.approx(1 / 3)
    assert distinct(["你好你好", "你好"], 2) == pytest.approx(1 / 2)
    # 你好 | 再见: bigrams 你好 再见 -> 2 distinct of 2 (好再 would exist only across the texts).
    assert distinct(["你好", "再见"], 2) == 1.0
    assert distinct(["你", ""], 2) == 0.0
    assert distinct([], 1) == 0.0


# A KdConv Information value: 18 + 19 CJK characters = 37 units, so "long" (> 20).
PARAGRAPH = "北京保利剧院是首都重要的演出场所之一，这里常年会上演重量级的话剧和交响音乐会。"


def test_contains_value_short_values_need_the_whole_value():
    assert contains_value("它在北京市东城区。", ["东城区"]) == 1.0
    assert contains_value("它在北京市东城区。", ["西城区", "东城区"]) == 1.0  # any value
    assert contains_value("它在北京市东城区。", ["西城区"]) == 0.0
    # NFKC + lowercase + punctuation dropped on both sides.
    assert contains_value("门票：ＡＢＣ 套票", ["abc套票"]) == 1.0
    # 11 units, so short: a 10-unit part is not enough.
    assert contains_value("是首都重要的演出场所", ["首都重要的演出场所之一"]) == 0.0
    assert contains_value("什么都行", ["", "！"]) == 0.0  # empty values never count


def test_contains_value_long_values_count_an_8_unit_quote():
    assert len(units(PARAGRAPH)) == 37
    # 是首都重要的演出场所之一 (12 units) is quoted from the paragraph: an 8-unit window matches.
    assert contains_value("知道呀，是首都重要的演出场所之一。", [PARAGRAPH]) == 1.0
    # exactly 8 units: 上演重量级的话剧 -> contained.
    assert contains_value("会上演：重量级 的话剧", [PARAGRAPH]) == 1.0
    # 首都重要的演出 is only 7 units of the paragraph; 我知道 around it is not in it -> no 8-unit window.
    assert contains_value("我知道首都重要的演出", [PARAGRAPH]) == 0.0
