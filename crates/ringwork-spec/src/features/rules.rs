//! Feature dependency rules as data (VIRTIO 1.4 §2.2.1, "Driver
//! Requirements: Feature Bits", and §2.2.2): the driver MUST NOT accept,
//! and the device MUST NOT offer, a feature which requires another feature
//! that was not accepted (offered). Re-exported by [`crate::features`].

use core::fmt;

use super::{BitName, FeatureSet};

/// A dependency rule between feature bits, as the spec states them ("X
/// requires Y", "requires Y or Z", "X MUST NOT be negotiated with Y").
///
/// The rule constrains sets that contain [`feature`](Self::feature); it says
/// nothing about sets without it. A set satisfies the rule if it holds every
/// bit of `requires_all`, at least one bit of `requires_any` (when that list
/// is not empty), and no bit of `conflicts`. The same check applies to the
/// features a device offers (§2.2.2: it MUST NOT offer a feature which
/// requires another it did not offer) and those a driver accepts (§2.2.1).
///
/// Rules are `const`-constructible, so a device-type module writes its list
/// as a `static`/`const` slice:
///
/// ```
/// use ringwork_spec::features::{check_dependencies, FeatureRule, FeatureSet, ViolationKind};
///
/// const GUEST_CSUM: u32 = 1;
/// const GUEST_TSO4: u32 = 7;
/// const GUEST_TSO6: u32 = 8;
/// const GUEST_ECN: u32 = 9;
/// const RULES: &[FeatureRule] = &[
///     FeatureRule::new(GUEST_TSO4, "§5.1.3.1").all_of(&[GUEST_CSUM]),
///     FeatureRule::new(GUEST_ECN, "§5.1.3.1").any_of(&[GUEST_TSO4, GUEST_TSO6]),
/// ];
///
/// let ok = FeatureSet::from_bits(&[GUEST_CSUM, GUEST_TSO4, GUEST_ECN]);
/// assert!(check_dependencies(&ok, RULES).is_ok());
/// let bad = FeatureSet::from_bits(&[GUEST_TSO4]);
/// let v = check_dependencies(&bad, RULES).unwrap_err();
/// assert_eq!((v.feature, v.kind), (GUEST_TSO4, ViolationKind::Missing(GUEST_CSUM)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureRule {
    /// The feature the rule constrains.
    pub feature: u32,
    /// Every one of these must be present with `feature`.
    pub requires_all: &'static [u32],
    /// At least one of these must be present with `feature` (no constraint
    /// when empty).
    pub requires_any: &'static [u32],
    /// None of these may be present with `feature` (mutual exclusion).
    pub conflicts: &'static [u32],
    /// Where the spec states the rule: a VIRTIO 1.4 section number such as
    /// `"§5.1.3.1"`, or a section title (without a "VIRTIO 1.4" prefix,
    /// which [`FeatureViolation`]'s `Display` adds).
    pub section: &'static str,
}

impl FeatureRule {
    /// A rule for `feature` with no constraint yet; add them with
    /// [`all_of`](Self::all_of), [`any_of`](Self::any_of) and
    /// [`conflicts_with`](Self::conflicts_with).
    pub const fn new(feature: u32, section: &'static str) -> Self {
        Self {
            feature,
            requires_all: &[],
            requires_any: &[],
            conflicts: &[],
            section,
        }
    }

    /// Sets [`requires_all`](Self::requires_all).
    pub const fn all_of(mut self, bits: &'static [u32]) -> Self {
        self.requires_all = bits;
        self
    }

    /// Sets [`requires_any`](Self::requires_any).
    pub const fn any_of(mut self, bits: &'static [u32]) -> Self {
        self.requires_any = bits;
        self
    }

    /// Sets [`conflicts`](Self::conflicts).
    pub const fn conflicts_with(mut self, bits: &'static [u32]) -> Self {
        self.conflicts = bits;
        self
    }

    /// Checks `set` against this rule alone.
    pub fn check(&self, set: &FeatureSet) -> Result<(), FeatureViolation> {
        if !set.contains(self.feature) {
            return Ok(());
        }
        let violation = |kind| FeatureViolation {
            feature: self.feature,
            kind,
            section: self.section,
        };
        if let Some(&m) = self.requires_all.iter().find(|&&b| !set.contains(b)) {
            return Err(violation(ViolationKind::Missing(m)));
        }
        if !self.requires_any.is_empty() && !self.requires_any.iter().any(|&b| set.contains(b)) {
            return Err(violation(ViolationKind::MissingAnyOf(self.requires_any)));
        }
        if let Some(&c) = self.conflicts.iter().find(|&&b| set.contains(b)) {
            return Err(violation(ViolationKind::Conflicts(c)));
        }
        Ok(())
    }
}

/// How a feature set breaks a [`FeatureRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    /// A bit of `requires_all` is absent.
    Missing(u32),
    /// No bit of `requires_any` (listed) is present.
    MissingAnyOf(&'static [u32]),
    /// A bit of `conflicts` is present.
    Conflicts(u32),
}

/// A feature set breaks a [`FeatureRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureViolation {
    /// The feature whose rule is broken.
    pub feature: u32,
    /// What is wrong.
    pub kind: ViolationKind,
    /// Where the spec states the rule (the rule's `section`).
    pub section: &'static str,
}

impl fmt::Display for FeatureViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "feature {:?} ", BitName(self.feature))?;
        match self.kind {
            ViolationKind::Missing(b) => write!(f, "requires feature {:?}", BitName(b))?,
            ViolationKind::MissingAnyOf(bits) => {
                f.write_str("requires one of features ")?;
                f.debug_list()
                    .entries(bits.iter().map(|&b| BitName(b)))
                    .finish()?;
            }
            ViolationKind::Conflicts(b) => {
                write!(f, "must not be negotiated with feature {:?}", BitName(b))?
            }
        }
        write!(f, " (VIRTIO 1.4 {})", self.section)
    }
}

impl core::error::Error for FeatureViolation {}

/// Checks `set` against every rule; returns the first violation in rule
/// order.
pub fn check_dependencies(set: &FeatureSet, rules: &[FeatureRule]) -> Result<(), FeatureViolation> {
    rules.iter().try_for_each(|r| r.check(set))
}

/// Every violation of `rules` by `set`, in rule order.
pub fn violations<'a>(
    set: &'a FeatureSet,
    rules: &'a [FeatureRule],
) -> impl Iterator<Item = FeatureViolation> + 'a {
    rules.iter().filter_map(move |r| r.check(set).err())
}

/// `set` with every feature whose rule it breaks removed, repeated until
/// no rule is broken (removing one feature can break another's rule).
///
/// This is what a driver does with the features it would like: it MUST NOT
/// accept a feature which requires another feature which was not accepted
/// (§2.2.1). A conflict drops the rule's own `feature`.
pub fn without_unsatisfied(mut set: FeatureSet, rules: &[FeatureRule]) -> FeatureSet {
    loop {
        let mut changed = false;
        for r in rules {
            if r.check(&set).is_err() {
                set.remove(r.feature);
                changed = true;
            }
        }
        if !changed {
            return set;
        }
    }
}

/// The features a driver accepts: those both `offered` and `wanted`, minus
/// any whose dependencies that leaves unmet.
pub fn negotiate(offered: FeatureSet, wanted: FeatureSet, rules: &[FeatureRule]) -> FeatureSet {
    without_unsatisfied(offered.intersection(wanted), rules)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::features::VIRTIO_F_RING_PACKED;
    use crate::features::VIRTIO_F_VERSION_1;
    use std::format;

    const A: u32 = 0;
    const B: u32 = 1;
    const C: u32 = 2;
    const D: u32 = 3;
    const RULES: &[FeatureRule] = &[
        FeatureRule::new(B, "§X").all_of(&[A]),
        FeatureRule::new(C, "§Y").all_of(&[B]).any_of(&[D, A]),
        FeatureRule::new(D, "§Z").conflicts_with(&[VIRTIO_F_RING_PACKED]),
    ];

    #[test]
    fn dependency_checks() {
        assert!(check_dependencies(&FeatureSet::EMPTY, RULES).is_ok());
        assert!(check_dependencies(&FeatureSet::from_bits(&[A, B, C]), RULES).is_ok());
        let v = check_dependencies(&FeatureSet::from_bits(&[B, C]), RULES).unwrap_err();
        assert_eq!(
            v,
            FeatureViolation {
                feature: B,
                kind: ViolationKind::Missing(A),
                section: "§X"
            }
        );
        let v = check_dependencies(&FeatureSet::from_bits(&[B, C, A]).without(A).with(B), RULES)
            .unwrap_err();
        assert_eq!(v.feature, B);
        let only_c = FeatureSet::from_bits(&[A, B, C]).without(A);
        assert_eq!(violations(&only_c, RULES).count(), 2);
        let e = FeatureRule::new(C, "§Y")
            .any_of(&[D])
            .check(&FeatureSet::from_bits(&[C]))
            .unwrap_err();
        assert_eq!(e.kind, ViolationKind::MissingAnyOf(&[D]));
        let e = check_dependencies(&FeatureSet::from_bits(&[D, VIRTIO_F_RING_PACKED]), RULES)
            .unwrap_err();
        assert_eq!(e.kind, ViolationKind::Conflicts(VIRTIO_F_RING_PACKED));
        assert_eq!(
            format!("{e}"),
            "feature 3 must not be negotiated with feature VIRTIO_F_RING_PACKED(34) (VIRTIO 1.4 §Z)"
        );
        let e = RULES[1].check(&FeatureSet::from_bits(&[C, B])).unwrap_err();
        assert_eq!(
            format!("{e}"),
            "feature 2 requires one of features [3, 0] (VIRTIO 1.4 §Y)"
        );
        assert_eq!(
            format!(
                "{}",
                RULES[0].check(&FeatureSet::from_bits(&[B])).unwrap_err()
            ),
            "feature 1 requires feature 0 (VIRTIO 1.4 §X)"
        );
    }

    #[test]
    fn unsatisfied_features_are_dropped_transitively() {
        // Without A, B goes; without B, C goes.
        let s = FeatureSet::from_bits(&[B, C, D, VIRTIO_F_VERSION_1]);
        assert_eq!(
            without_unsatisfied(s, RULES),
            FeatureSet::from_bits(&[D, VIRTIO_F_VERSION_1])
        );
        let s = FeatureSet::from_bits(&[D, VIRTIO_F_RING_PACKED]);
        assert_eq!(
            without_unsatisfied(s, RULES),
            FeatureSet::from_bits(&[VIRTIO_F_RING_PACKED])
        );
        let offered = FeatureSet::from_bits(&[A, B, C, VIRTIO_F_VERSION_1]);
        let wanted = FeatureSet::from_bits(&[B, C, VIRTIO_F_VERSION_1, 90]);
        assert_eq!(
            negotiate(offered, wanted, RULES),
            FeatureSet::from_bits(&[VIRTIO_F_VERSION_1])
        );
    }
}
