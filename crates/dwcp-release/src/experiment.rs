//! Experiment results: is the treatment's conversion rate different from
//! the control's, with an interval that stays valid however often it is
//! looked at, and a check that the traffic was split as planned.
//!
//! [`results`] reads each variant's totals (exposures, conversions) and
//! compares the conversion rates. It keeps no state and reads no clock: the
//! same totals give the same answer.
//!
//! # The effect and its always-valid interval
//!
//! With `θ̂ = p̂_t − p̂_c` the observed difference of conversion rates and
//! `V = r_t(1 − r_t)/n_t + r_c(1 − r_c)/n_c` its variance, the test is the
//! normal-mixture mSPRT of [`crate::analysis`] (same notation), after
//! Johari, Pekelis and Walsh, "Always Valid Inference: Bringing Sequential
//! Analysis to A/B Testing" (arXiv:1512.04922; with Koomen, Operations
//! Research, 2022). For a hypothesised difference `θ` and a normal mixture
//! of variance `τ²` over the alternative,
//!
//! ```text
//! Λ(θ) = sqrt(V / (V + τ²)) · exp(τ² (θ̂ − θ)² / (2 V (V + τ²)))
//! p    = min(1, 1 / Λ(0))                   always-valid p-value, θ₀ = 0
//! ```
//!
//! The always-valid `(1 − α)` interval is the set of `θ` the test does not
//! reject, `{θ : Λ(θ) < 1/α}`; solving for `θ`:
//!
//! ```text
//! θ̂ ± sqrt( (V (V + τ²) / τ²) · (2 ln(1/α) + ln((V + τ²) / V)) )
//! ```
//!
//! This is the confidence sequence that inverts the mSPRT (Johari et al.,
//! who define always-valid intervals as the inversion of always-valid
//! p-values); the same normal-mixture boundary is Robbins' (1970,
//! "Statistical Methods Related to the Law of the Iterated Logarithm", Ann.
//! Math. Statist. 41(5)) and appears in Howard, Ramdas, McAuliffe and
//! Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence
//! sequences" (Ann. Statist. 49(2), 2021; arXiv:1810.08240). Because `Λ(θ)`
//! at the true `θ` is a nonnegative martingale, Ville's inequality bounds
//! the chance that it *ever* reaches `1/α` by `α`: the interval covers the
//! true effect at every look at once, so looking after every exposure
//! costs nothing. Two honest caveats: the mSPRT here is the normal
//! approximation (rates are binomial, `V` is estimated), which is what
//! Johari et al. deploy and is accurate once each variant has some
//! conversions — which is why nothing is claimed below `min_exposures`; and
//! this function keeps no state, so it does not intersect the intervals of
//! earlier looks (or take the running minimum of `p`) — that would be
//! tighter and equally valid, but each look's interval is valid on its own.
//! `r` are the rates moved off 0 and 1 (`(x + 1)/(n + 2)`) as in
//! [`crate::analysis`], so a variant with no conversion yet still has some
//! uncertainty and `V` is never 0.
//!
//! # Sample-ratio mismatch (SRM)
//!
//! If the treatment was planned to get a share `s` of exposures but got a
//! noticeably different one, assignment or logging is broken and the
//! comparison is not to be trusted, whatever it says (Fabijan et al.,
//! "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments",
//! KDD 2019). The check is Pearson's chi-square test with one degree of
//! freedom of the exposures against `s`, its p-value the chi-square(1)
//! survival function `erfc(sqrt(x/2))`. Unlike the interval, this is a
//! *fixed-sample* test: its error rate is per look, and looking at it
//! repeatedly inflates the chance of a false alarm. The default `srm_alpha`
//! is therefore strict (0.001), so that even many looks rarely raise a
//! false alarm, while a real mismatch — whose chi-square grows with the
//! sample — is still flagged soon. The check only speaks once there are at
//! least `2 · min_exposures` exposures in all and each variant's expected
//! count is at least 5 (the usual condition for the chi-square
//! approximation). A flagged mismatch takes precedence over every other
//! verdict, including [`Verdict::NotEnoughData`]: a variant that gets no
//! exposures at all is broken, not merely short of data.

/// One variant's totals since the experiment started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VariantCounts {
    /// Users (or requests) that saw the variant.
    pub exposures: u64,
    /// Of which converted (more than `exposures` is read as `exposures`).
    pub conversions: u64,
}

/// How an experiment is analysed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExperimentConfig {
    /// Chance that the interval ever misses the true effect, over all looks.
    pub alpha: f64,
    /// Standard deviation of the mixture over rate differences: the size of
    /// effect (absolute, 0.05 is five percentage points) the test is most
    /// sensitive to.
    pub tau: f64,
    /// The treatment's planned share of exposures.
    pub expected_share: f64,
    /// Significance level of the (fixed-sample) sample-ratio-mismatch check.
    pub srm_alpha: f64,
    /// Exposures each variant needs before anything is claimed.
    pub min_exposures: u64,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            tau: 0.05,
            expected_share: 0.5,
            srm_alpha: 0.001,
            min_exposures: 100,
        }
    }
}

/// One variant's numbers in the results.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariantSummary {
    /// Users that saw the variant.
    pub exposures: u64,
    /// Of which converted.
    pub conversions: u64,
    /// Conversions per exposure (0 with no exposures).
    pub rate: f64,
}

/// An interval for the effect (absolute difference of conversion rates).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
}

/// The sample-ratio-mismatch check.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SrmCheck {
    /// The treatment's planned share of exposures.
    pub expected_share: f64,
    /// Its actual share (the planned share with no exposures).
    pub observed_share: f64,
    /// Pearson's chi-square statistic (1 degree of freedom).
    pub chi_square: f64,
    /// Its fixed-sample p-value.
    pub p_value: f64,
    /// The level it is held to.
    pub alpha: f64,
    /// Whether the split is flagged as broken (only with enough exposures).
    pub mismatch: bool,
}

/// What the experiment says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exposures were not split as planned: do not trust these results.
    SampleRatioMismatch,
    /// A variant has fewer than `min_exposures`: nothing can be said yet.
    NotEnoughData,
    /// The interval still contains 0 (so far; not proof of no effect).
    NoDetectableEffect,
    /// The treatment converts better, at every-look confidence 1 − α.
    TreatmentBetter,
    /// The treatment converts worse, at every-look confidence 1 − α.
    TreatmentWorse,
}

/// An experiment's results at one look.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExperimentResults {
    /// The control's numbers.
    pub control: VariantSummary,
    /// The treatment's numbers.
    pub treatment: VariantSummary,
    /// Treatment rate minus control rate.
    pub effect: f64,
    /// The effect relative to the control rate (none when that is 0).
    pub relative_lift: Option<f64>,
    /// The always-valid (1 − α) interval for the effect.
    pub interval: Interval,
    /// The α of the interval and the p-value.
    pub alpha: f64,
    /// Always-valid p-value for "no effect".
    pub p_value: f64,
    /// The interval excludes 0 and each variant has `min_exposures`.
    pub significant: bool,
    /// Whether exposures were split as planned.
    pub srm: SrmCheck,
    /// What to conclude.
    pub verdict: Verdict,
}

/// Compares the treatment with the control from their totals so far.
pub fn results(
    control: &VariantCounts,
    treatment: &VariantCounts,
    config: &ExperimentConfig,
) -> ExperimentResults {
    let config = sanitize(config);
    let summary = |v: &VariantCounts| {
        // Conversions past exposures would make a rate above 1: the counts
        // are inconsistent, and the most that can have converted is all.
        let conversions = v.conversions.min(v.exposures);
        VariantSummary {
            exposures: v.exposures,
            conversions,
            rate: if v.exposures == 0 {
                0.0
            } else {
                conversions as f64 / v.exposures as f64
            },
        }
    };
    let (c, t) = (summary(control), summary(treatment));
    let effect = t.rate - c.rate;
    let relative_lift = (c.rate > 0.0).then(|| effect / c.rate);

    // Variance from rates moved off 0 and 1 (a variant with no conversion
    // yet still has some uncertainty), so V > 0 and every value is finite.
    let variance = |s: &VariantSummary| {
        let r = (s.conversions as f64 + 1.0) / (s.exposures as f64 + 2.0);
        r * (1.0 - r) / s.exposures.max(1) as f64
    };
    let v = variance(&c) + variance(&t);
    let half_width = half_width(v, config.tau, config.alpha);
    let interval = Interval {
        lower: effect - half_width,
        upper: effect + half_width,
    };
    let p_value = p_value(effect, v, config.tau);
    let enough = c.exposures >= config.min_exposures && t.exposures >= config.min_exposures;
    // Decided from the interval so that `significant` and the interval can
    // never disagree (p < α is the same condition up to rounding).
    let significant = enough && (interval.lower > 0.0 || interval.upper < 0.0);

    let srm = srm_check(c.exposures, t.exposures, &config);
    let verdict = if srm.mismatch {
        Verdict::SampleRatioMismatch
    } else if !enough {
        Verdict::NotEnoughData
    } else if !significant {
        Verdict::NoDetectableEffect
    } else if effect > 0.0 {
        Verdict::TreatmentBetter
    } else {
        Verdict::TreatmentWorse
    };
    ExperimentResults {
        control: c,
        treatment: t,
        effect,
        relative_lift,
        interval,
        alpha: config.alpha,
        p_value,
        significant,
        srm,
        verdict,
    }
}

/// The configuration with out-of-range values moved into range, so that no
/// setting can produce NaN or infinity (they would reach the JSON as null).
fn sanitize(config: &ExperimentConfig) -> ExperimentConfig {
    let default = ExperimentConfig::default();
    let within = |x: f64, lo: f64, hi: f64, fallback: f64| {
        if x.is_nan() {
            fallback
        } else {
            x.clamp(lo, hi)
        }
    };
    ExperimentConfig {
        alpha: within(config.alpha, 1e-12, 0.5, default.alpha),
        tau: within(config.tau, 1e-6, 1.0, default.tau),
        // A plan of 0% or 100% leaves nothing to compare; keeping the share
        // strictly inside (0, 1) keeps the chi-square finite.
        expected_share: within(
            config.expected_share,
            1e-6,
            1.0 - 1e-6,
            default.expected_share,
        ),
        srm_alpha: within(config.srm_alpha, 0.0, 1.0, default.srm_alpha),
        min_exposures: config.min_exposures,
    }
}

/// Half-width of the always-valid interval: the `|θ̂ − θ|` at which
/// `Λ(θ) = 1/α`, with `v` the variance of `θ̂` and `tau` the mixture's sd.
fn half_width(v: f64, tau: f64, alpha: f64) -> f64 {
    let t2 = tau * tau;
    (v * (v + t2) / t2 * (2.0 * (1.0 / alpha).ln() + ((v + t2) / v).ln())).sqrt()
}

/// 1/Λ for an observed difference `diff` against 0 (as in
/// [`crate::analysis`]), capped at 1.
fn p_value(diff: f64, v: f64, tau: f64) -> f64 {
    let t2 = tau * tau;
    let log_lambda = 0.5 * (v / (v + t2)).ln() + t2 * diff * diff / (2.0 * v * (v + t2));
    (-log_lambda).exp().min(1.0)
}

/// Pearson's chi-square test (1 dof) of the exposures against the plan.
fn srm_check(control: u64, treatment: u64, config: &ExperimentConfig) -> SrmCheck {
    let s = config.expected_share;
    let total = control as f64 + treatment as f64;
    let (chi_square, observed_share) = if total > 0.0 {
        let (e_t, e_c) = (s * total, (1.0 - s) * total);
        let chi = (treatment as f64 - e_t).powi(2) / e_t + (control as f64 - e_c).powi(2) / e_c;
        (chi, treatment as f64 / total)
    } else {
        (0.0, s)
    };
    let p_value = chi_square_1_sf(chi_square);
    // The chi-square approximation needs a few expected in each cell, and
    // below the experiment's own minimum the check stays silent as well.
    let enough = total >= 2.0 * config.min_exposures as f64 && s.min(1.0 - s) * total >= 5.0;
    SrmCheck {
        expected_share: s,
        observed_share,
        chi_square,
        p_value,
        alpha: config.srm_alpha,
        mismatch: enough && p_value < config.srm_alpha,
    }
}

/// Survival function of the chi-square distribution with 1 degree of
/// freedom: `P(X > x) = P(|Z| > sqrt(x)) = erfc(sqrt(x / 2))`.
fn chi_square_1_sf(x: f64) -> f64 {
    if x <= 0.0 {
        1.0
    } else {
        erfc((x / 2.0).sqrt())
    }
}

/// The complementary error function, to about 1e-15 relative error.
///
/// Below 2.5 it is `1 − erf(x)` with the series of all-positive terms
/// `erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1))` (Abramowitz
/// and Stegun 7.1.6), which has no cancellation; there erfc ≥ 4e-4, so the
/// subtraction loses at most a few digits. From 2.5 up it is the continued
/// fraction `erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`
/// (A&S 7.1.14), evaluated with the modified Lentz method, which converges
/// quickly there and keeps full relative precision in the far tail.
fn erfc(x: f64) -> f64 {
    const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        return 1.0 - 2.0 * FRAC_1_SQRT_PI * (-x2).exp() * sum;
    }
    if x > 27.0 {
        // e^(−x²) underflows to 0 beyond about 27.3.
        return 0.0;
    }
    // Modified Lentz: f = b0 + a1/(b1 + a2/(b2 + …)) with b = x, a_k = k/2.
    const TINY: f64 = 1e-300;
    let mut f = x;
    let mut c = f;
    let mut d = 0.0;
    for k in 1..500 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        if d.abs() < TINY {
            d = TINY;
        }
        d = 1.0 / d;
        c = x + a / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    FRAC_1_SQRT_PI * (-x * x).exp() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*, as in the analysis
    /// tests), enough for simulations that must replay exactly.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        }

        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn counts(exposures: u64, conversions: u64) -> VariantCounts {
        VariantCounts {
            exposures,
            conversions,
        }
    }

    #[test]
    fn erfc_matches_reference_values() {
        // Reference values from Python's math.erfc (correctly rounded libm).
        let reference = [
            (0.0, 1.0),
            (1e-8, 0.999_999_988_716_208_3),
            (0.1, 0.887_537_083_981_715_2),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (1.5, 0.033_894_853_524_689_274),
            (2.0, 0.004_677_734_981_047_265),
            // Either side of the switch from the series to the fraction.
            (2.499_999, 0.000_406_954_195_734_635_3),
            (2.5, 0.000_406_952_017_444_958_9),
            (2.500_001, 0.000_406_949_839_166_174_03),
            (3.0, 2.209_049_699_858_543_8e-5),
            (4.0, 1.541_725_790_028_002e-8),
            (5.0, 1.537_459_794_428_035_1e-12),
            (6.0, 2.151_973_671_249_891_6e-17),
            (10.0, 2.088_487_583_762_545e-45),
            (26.0, 5.663_192_408_856_143e-296),
        ];
        for (x, want) in reference {
            let got = erfc(x);
            let rel = ((got - want) / want).abs();
            assert!(rel < 1e-12, "erfc({x}) = {got}, want {want} (rel {rel:e})");
        }
        assert!((erfc(-1.0) - (2.0 - 0.157_299_207_050_285_13)).abs() < 1e-15);
        assert_eq!(erfc(40.0), 0.0);
    }

    #[test]
    fn chi_square_survival_matches_known_quantiles() {
        // 3.841458820694124 is the 95% quantile of chi-square(1); 6.634896601021214
        // the 99%; 10.827566170662733 the 99.9%.
        assert!((chi_square_1_sf(3.841_458_820_694_124) - 0.05).abs() < 1e-12);
        assert!((chi_square_1_sf(6.634_896_601_021_214) - 0.01).abs() < 1e-12);
        assert!((chi_square_1_sf(10.827_566_170_662_733) - 0.001).abs() < 1e-12);
        assert_eq!(chi_square_1_sf(0.0), 1.0);
    }

    #[test]
    fn the_interval_is_where_the_p_value_reaches_alpha() {
        // At either end of the interval for the effect, Λ(θ) = 1/α.
        let (v, tau, alpha) = (2e-5, 0.05, 0.05);
        let h = half_width(v, tau, alpha);
        assert!((p_value(h, v, tau) - alpha).abs() < 1e-12);
        assert!((p_value(-h, v, tau) - alpha).abs() < 1e-12);
        let r = results(
            &counts(10_000, 1_000),
            &counts(10_000, 1_200),
            &ExperimentConfig::default(),
        );
        assert_eq!(r.significant, r.p_value < r.alpha);
    }

    /// One simulated experiment: `total` exposures assigned 50/50 at
    /// random, converting at the variants' rates, looked at after every
    /// 100. Returns (the always-valid interval ever excluded 0, the naive
    /// fixed-sample 95% interval ever did, the verdict at the first look
    /// that claimed an effect, the SRM check was ever flagged).
    fn simulate(
        seed: u64,
        control_rate: f64,
        treatment_rate: f64,
    ) -> (bool, bool, Option<Verdict>, bool) {
        let config = ExperimentConfig::default();
        let mut rng = Rng::new(seed);
        let (mut c, mut t) = (VariantCounts::default(), VariantCounts::default());
        let (mut ever, mut naive_ever, mut claimed, mut srm) = (false, false, None, false);
        for _ in 0..200 {
            for _ in 0..100 {
                let (v, rate) = if rng.next() < 0.5 {
                    (&mut t, treatment_rate)
                } else {
                    (&mut c, control_rate)
                };
                v.exposures += 1;
                v.conversions += u64::from(rng.next() < rate);
            }
            let r = results(&c, &t, &config);
            ever |= r.interval.lower > 0.0 || r.interval.upper < 0.0;
            srm |= r.srm.mismatch;
            // What peeking at a fixed-sample interval does, for contrast.
            let se = |v: &VariantCounts| {
                let p = v.conversions as f64 / v.exposures.max(1) as f64;
                p * (1.0 - p) / v.exposures.max(1) as f64
            };
            naive_ever |= r.effect.abs() > 1.959_964 * (se(&c) + se(&t)).sqrt();
            if claimed.is_none()
                && matches!(
                    r.verdict,
                    Verdict::TreatmentBetter | Verdict::TreatmentWorse
                )
            {
                claimed = Some(r.verdict);
            }
        }
        (ever, naive_ever, claimed, srm)
    }

    #[test]
    fn an_aa_test_rarely_excludes_zero_however_often_it_is_looked_at() {
        // 500 experiments with no effect (10% both), each looked at 200
        // times: the interval may miss 0 in at most α of them (5%, plus a
        // little for simulation noise). A fixed-sample interval looked at
        // as often misses it far more often, which shows the simulation
        // can tell the difference.
        let runs = 500;
        let (mut ever, mut naive, mut claimed, mut srm) = (0, 0, 0, 0);
        for seed in 0..runs {
            let (e, n, c, m) = simulate(seed, 0.10, 0.10);
            ever += usize::from(e);
            naive += usize::from(n);
            claimed += usize::from(c.is_some());
            srm += usize::from(m);
        }
        println!(
            "A/A: always-valid interval excluded 0 in {ever}/{runs} runs, \
             claimed an effect in {claimed}; naive 95% interval excluded 0 in {naive}/{runs}; \
             SRM (a fixed-sample test, α = 0.001) ever flagged in {srm}/{runs}"
        );
        assert!(ever * 100 <= runs as usize * 6, "{ever} of {runs}");
        assert!(claimed <= ever);
        // 200 looks at a per-look 0.001 still stay well under α overall.
        assert!(
            srm * 100 <= runs as usize * 5,
            "SRM flagged in {srm} of {runs}"
        );
        assert!(
            naive > 4 * ever.max(10),
            "naive {naive}, always-valid {ever}"
        );
    }

    #[test]
    fn an_ab_test_with_a_real_lift_is_detected_in_most_runs() {
        // 10% against 12% over 20,000 exposures (about 10,000 a side).
        let runs = 200;
        let mut better = 0;
        for seed in 1_000..1_000 + runs {
            match simulate(seed, 0.10, 0.12).2 {
                Some(Verdict::TreatmentBetter) => better += 1,
                Some(v) => panic!("seed {seed}: {v:?}"),
                None => {}
            }
        }
        println!("A/B 10% vs 12%: detected in {better}/{runs} runs");
        assert!(better * 100 >= runs as usize * 75, "{better} of {runs}");
    }

    #[test]
    fn a_clear_difference_gets_a_direction() {
        let config = ExperimentConfig::default();
        let r = results(&counts(10_000, 1_000), &counts(10_000, 1_300), &config);
        assert_eq!(r.verdict, Verdict::TreatmentBetter);
        assert!((r.effect - 0.03).abs() < 1e-12);
        assert!((r.relative_lift.unwrap() - 0.3).abs() < 1e-12);
        assert!(r.interval.lower > 0.0 && r.interval.upper > 0.03);
        let r = results(&counts(10_000, 1_300), &counts(10_000, 1_000), &config);
        assert_eq!(r.verdict, Verdict::TreatmentWorse);
        let r = results(&counts(10_000, 1_000), &counts(10_000, 1_010), &config);
        assert_eq!(r.verdict, Verdict::NoDetectableEffect);
        assert!(!r.significant && r.p_value > 0.05);
    }

    #[test]
    fn sample_ratio_mismatch_is_flagged_and_overrides_the_verdict() {
        let config = ExperimentConfig::default();
        // 5,500 against 4,500 on a 50/50 plan: chi-square 100.
        let r = results(&counts(4_500, 450), &counts(5_500, 550), &config);
        assert!((r.srm.chi_square - 100.0).abs() < 1e-9);
        assert!(r.srm.mismatch && r.srm.p_value < 1e-20);
        assert_eq!(r.verdict, Verdict::SampleRatioMismatch);
        // Even with a large effect, the results are not to be trusted.
        let r = results(&counts(4_500, 100), &counts(5_500, 1_000), &config);
        assert_eq!(r.verdict, Verdict::SampleRatioMismatch);
        // 5,030 against 4,970 is chance (chi-square 0.36, p ≈ 0.55).
        let r = results(&counts(4_970, 497), &counts(5_030, 503), &config);
        assert!(!r.srm.mismatch && (r.srm.p_value - 0.548_506_1).abs() < 1e-6);
        assert_eq!(r.verdict, Verdict::NoDetectableEffect);
        // A 20/80 plan is judged against its own shares.
        let plan = ExperimentConfig {
            expected_share: 0.2,
            ..config
        };
        let r = results(&counts(8_000, 800), &counts(2_000, 200), &plan);
        assert!(!r.srm.mismatch && r.srm.chi_square < 1e-9);
        assert!(
            results(&counts(5_000, 500), &counts(5_000, 500), &plan)
                .srm
                .mismatch
        );
        // A variant that gets nothing is broken, not short of data.
        let r = results(&counts(1_000, 100), &counts(0, 0), &config);
        assert_eq!(r.verdict, Verdict::SampleRatioMismatch);
        // But on a handful of exposures the check stays silent.
        let r = results(&counts(30, 3), &counts(5, 0), &config);
        assert!(!r.srm.mismatch);
        assert_eq!(r.verdict, Verdict::NotEnoughData);
    }

    #[test]
    fn nothing_is_claimed_below_the_minimum() {
        let config = ExperimentConfig::default();
        // 99 exposures on one side, however lopsided the conversions.
        let r = results(&counts(100, 0), &counts(99, 99), &config);
        assert_eq!(r.verdict, Verdict::NotEnoughData);
        assert!(!r.significant);
        let r = results(&counts(100, 0), &counts(100, 100), &config);
        assert_eq!(r.verdict, Verdict::TreatmentBetter);
        assert!(r.significant);
    }

    #[test]
    fn no_conversions_or_exposures_give_finite_numbers_that_round_trip() {
        let config = ExperimentConfig::default();
        let cases = [
            (counts(0, 0), counts(0, 0)),
            (counts(5_000, 0), counts(5_000, 0)),
            (counts(5_000, 5_000), counts(5_000, 5_000)),
            (counts(10, 20), counts(u64::MAX, u64::MAX / 3)),
        ];
        for (c, t) in cases {
            let r = results(&c, &t, &config);
            let json = serde_json::to_string(&r).unwrap();
            assert!(
                !json.contains("null") || r.relative_lift.is_none(),
                "{json}"
            );
            // It loads again (serde_json may round the last bit of a float,
            // so compare the reloaded results through their JSON).
            let back: ExperimentResults = serde_json::from_str(&json).unwrap();
            assert_eq!(back.verdict, r.verdict);
            assert!(
                (back.interval.upper - r.interval.upper).abs() <= 1e-15 * r.interval.upper.abs()
            );
            for x in [
                r.control.rate,
                r.treatment.rate,
                r.effect,
                r.interval.lower,
                r.interval.upper,
                r.p_value,
                r.srm.chi_square,
                r.srm.p_value,
                r.srm.observed_share,
            ] {
                assert!(x.is_finite(), "{x} in {json}");
            }
        }
        let r = results(&counts(5_000, 0), &counts(5_000, 0), &config);
        assert_eq!(r.verdict, Verdict::NoDetectableEffect);
        assert_eq!(r.relative_lift, None);
        assert!(r.interval.lower < 0.0 && r.interval.upper > 0.0);
        // Nonsense settings are moved into range rather than yield NaN.
        let wild = ExperimentConfig {
            alpha: f64::NAN,
            tau: 0.0,
            expected_share: 1.0,
            srm_alpha: -1.0,
            min_exposures: 0,
        };
        let r = results(&counts(0, 0), &counts(10, 1), &wild);
        assert!(
            serde_json::to_string(&r)
                .unwrap()
                .contains("\"alpha\":0.05")
        );
        assert!(r.interval.lower.is_finite() && r.srm.chi_square.is_finite());
    }

    #[test]
    fn config_defaults_fill_missing_fields() {
        let c: ExperimentConfig = serde_json::from_str(r#"{"alpha":0.01}"#).unwrap();
        assert_eq!(
            c,
            ExperimentConfig {
                alpha: 0.01,
                ..ExperimentConfig::default()
            }
        );
    }
}
