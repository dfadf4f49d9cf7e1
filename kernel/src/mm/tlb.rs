//! TLB flushes that cannot be forgotten.
//!
//! A TLB may keep using a translation after its page-table entry changed,
//! until the translation is flushed. Forgetting that flush is the bug that
//! lets a user read a frame already given to someone else, or write a page
//! whose dirty bit reclaim then never sees. So every page-table change that
//! can leave a stale translation behind returns a [`PageFlush`] token, and
//! the token must be consumed: flushed through a [`TlbFlush`], added to a
//! [`FlushBatch`] that is flushed, or explicitly ignored with the one valid
//! reason, [`PageFlush::ignore_fresh_table`] (no CPU has ever loaded the
//! tables, so no TLB can hold anything from them).
//!
//! The tokens are `#[must_use]`, which catches `pt.unmap(va)?;`. Dropping
//! one that needs a flush (`let _ = ...`, an early return) panics in debug
//! builds, test kernels included, and is logged otherwise.
//!
//! # Why a batch
//!
//! With several CPUs a flush becomes a shootdown ([`super::shootdown`]): an
//! interrupt to every CPU that may cache the space, and a wait for all of
//! them. That costs the same
//! for one page as for thirty, so callers that change many entries collect
//! their tokens in a [`FlushBatch`] and flush once. [`TlbFlush::flush_pages`]
//! takes a slice for the same reason. A batch that outgrows
//! [`BATCH_PAGES`] becomes a flush of the whole address space, as Linux's
//! `tlb_single_page_flush_ceiling` does.
//!
//! # Order
//!
//! A frame (or table) whose mapping was removed may be reused only after the
//! flush: until then some CPU may still write to it through the old
//! translation. Flush first, then free.

use super::Pfn;
use super::paging::PageSize;

/// Pages a [`FlushBatch`] names one by one before it flushes the whole
/// space instead (Linux's default ceiling is 33).
pub const BATCH_PAGES: usize = 32;

/// One page whose translation may be cached: the page that starts at `va`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPage {
    pub va: u64,
    pub size: PageSize,
}

/// Something that can drop cached translations: this CPU's TLB
/// (`arch::paging::Tlb`), every CPU's by a shootdown (`arch::tlb`, over
/// [`super::shootdown`]), or the simulated MMU of the host tests.
///
/// Translations belong to the address space whose root table they were
/// walked from, except global ones (`LeafFlags::GLOBAL`), which serve every
/// space. When a method returns, no CPU uses a translation it dropped.
/// `Sync`, because every CPU flushes through the same one.
pub trait TlbFlush: Sync {
    /// Drops the translations of `pages` in the space rooted at `root`,
    /// global ones included, and any cached table entries above them.
    fn flush_pages(&self, root: Pfn, pages: &[FlushPage]);

    /// Drops every non-global translation and cached table entry of the
    /// space rooted at `root`.
    fn flush_space(&self, root: Pfn);

    /// Drops every translation of every space, global ones included.
    fn flush_all(&self);
}

/// What one page-table change needs flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The old entry was not present: no TLB can cache it.
    Nothing,
    Page(FlushPage),
    /// A table was replaced: everything below it may be cached.
    Space,
}

/// The flush one page-table change needs before anyone may rely on it.
/// See the module doc.
#[must_use = "the old translation may still be cached: flush it, batch it, or say why not"]
#[derive(Debug)]
pub struct PageFlush {
    root: Pfn,
    scope: Scope,
}

impl PageFlush {
    pub(crate) fn page(root: Pfn, va: u64, size: PageSize) -> PageFlush {
        PageFlush {
            root,
            scope: Scope::Page(FlushPage { va, size }),
        }
    }

    pub(crate) fn space(root: Pfn) -> PageFlush {
        PageFlush {
            root,
            scope: Scope::Space,
        }
    }

    pub(crate) fn nothing(root: Pfn) -> PageFlush {
        PageFlush {
            root,
            scope: Scope::Nothing,
        }
    }

    /// The root of the tables that changed.
    pub fn root(&self) -> Pfn {
        self.root
    }

    /// Whether any TLB may hold the old translation. A token that needs no
    /// flush may be dropped; consuming it is still the clearer code.
    pub fn is_needed(&self) -> bool {
        self.scope != Scope::Nothing
    }

    /// The one page to flush, if the change is that narrow.
    pub fn page_to_flush(&self) -> Option<FlushPage> {
        match self.scope {
            Scope::Page(page) => Some(page),
            _ => None,
        }
    }

    /// One token for both changes (of the same tables): the page when
    /// they name the same one, else the whole space.
    pub fn merge(self, other: PageFlush) -> PageFlush {
        let (a, b, root) = (self.scope, other.scope, self.root);
        core::mem::forget(self);
        core::mem::forget(other);
        let scope = match (a, b) {
            (Scope::Nothing, s) | (s, Scope::Nothing) => s,
            (Scope::Page(p), Scope::Page(q)) if p == q => a,
            _ => Scope::Space,
        };
        PageFlush { root, scope }
    }

    /// Flushes the old translation now.
    pub fn flush(self, tlb: &dyn TlbFlush) {
        match self.scope {
            Scope::Nothing => {}
            Scope::Page(page) => tlb.flush_pages(self.root, &[page]),
            Scope::Space => tlb.flush_space(self.root),
        }
        core::mem::forget(self);
    }

    /// Skips the flush because no CPU has ever loaded these tables (a
    /// space being built, boot's tables before CR3 points at them), so no
    /// TLB can hold a translation from them. Never valid for tables that
    /// were once loaded, even if no CPU runs them now: a TLB that tags
    /// translations by address space (PCID, the simulated MMU) keeps them.
    pub fn ignore_fresh_table(self) {
        core::mem::forget(self);
    }
}

impl Drop for PageFlush {
    fn drop(&mut self) {
        if self.is_needed() {
            forgotten("PageFlush", self.root);
        }
    }
}

/// What a batch will flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchScope {
    /// The first `len` of `pages` in `root`.
    Pages,
    /// All of `root`: too many pages, or a table was replaced.
    Space,
    /// Tokens of different spaces met.
    All,
}

/// Flush tokens collected to be flushed at once. See the module doc.
///
/// An empty batch may be dropped; one holding tokens must be consumed like
/// a token. Needs no heap: it can be used before the kernel heap exists.
#[must_use = "the batch holds flushes that are still owed: flush it or say why not"]
#[derive(Debug)]
pub struct FlushBatch {
    /// The space of the first token that needed a flush.
    root: Option<Pfn>,
    pages: [FlushPage; BATCH_PAGES],
    len: usize,
    scope: BatchScope,
}

impl Default for FlushBatch {
    fn default() -> FlushBatch {
        FlushBatch::new()
    }
}

impl FlushBatch {
    pub const fn new() -> FlushBatch {
        const NONE: FlushPage = FlushPage {
            va: 0,
            size: PageSize::Size4K,
        };
        FlushBatch {
            root: None,
            pages: [NONE; BATCH_PAGES],
            len: 0,
            scope: BatchScope::Pages,
        }
    }

    /// Takes over `flush`'s obligation.
    pub fn add(&mut self, flush: PageFlush) {
        let (root, scope) = (flush.root, flush.scope);
        core::mem::forget(flush);
        if scope == Scope::Nothing {
            return;
        }
        match self.root {
            None => self.root = Some(root),
            // A superset is always correct; spaces rarely mix in one batch.
            Some(r) if r != root => self.scope = BatchScope::All,
            Some(_) => {}
        }
        match (self.scope, scope) {
            (BatchScope::Pages, Scope::Page(page)) if self.len < BATCH_PAGES => {
                self.pages[self.len] = page;
                self.len += 1;
            }
            (BatchScope::Pages, _) => self.scope = BatchScope::Space,
            _ => {}
        }
    }

    /// Moves every obligation of `other` into this batch.
    pub fn append(&mut self, other: FlushBatch) {
        let (root, scope, len, pages) = (other.root, other.scope, other.len, other.pages);
        core::mem::forget(other);
        let Some(root) = root else {
            return;
        };
        match scope {
            BatchScope::Pages => pages[..len]
                .iter()
                .for_each(|p| self.add(PageFlush::page(root, p.va, p.size))),
            BatchScope::Space => self.add(PageFlush::space(root)),
            BatchScope::All => {
                self.add(PageFlush::space(root));
                self.scope = BatchScope::All;
            }
        }
    }

    /// Whether nothing needs flushing.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Pages that will be flushed one by one; empty once the batch has
    /// grown into a whole-space or global flush.
    pub fn pages(&self) -> &[FlushPage] {
        match self.scope {
            BatchScope::Pages => &self.pages[..self.len],
            _ => &[],
        }
    }

    /// Flushes everything collected, with one call into `tlb`.
    pub fn flush(self, tlb: &dyn TlbFlush) {
        if let Some(root) = self.root {
            match self.scope {
                BatchScope::Pages => tlb.flush_pages(root, &self.pages[..self.len]),
                BatchScope::Space => tlb.flush_space(root),
                BatchScope::All => tlb.flush_all(),
            }
        }
        core::mem::forget(self);
    }

    /// As [`PageFlush::ignore_fresh_table`], for every token collected.
    pub fn ignore_fresh_table(self) {
        core::mem::forget(self);
    }
}

impl Drop for FlushBatch {
    fn drop(&mut self) {
        if let Some(root) = self.root {
            forgotten("FlushBatch", root);
        }
    }
}

/// A flush token dropped while it was still owed: a bug in the caller, so
/// loud where tests run, logged where they do not.
pub(crate) fn forgotten(what: &str, root: Pfn) {
    // Panicking again while a failed test unwinds would abort the run and
    // hide the first failure.
    #[cfg(test)]
    if std::thread::panicking() {
        return;
    }
    if cfg!(debug_assertions) {
        panic!("{what} of root {:#x} dropped without a flush", root.0);
    }
    log::error!("{what} of root {:#x} dropped without a flush", root.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use spin::Mutex;

    /// Records each call, to check what a token or batch asks for.
    #[derive(Default)]
    struct Log(Mutex<Vec<(&'static str, Pfn, Vec<FlushPage>)>>);

    impl TlbFlush for Log {
        fn flush_pages(&self, root: Pfn, pages: &[FlushPage]) {
            self.0.lock().push(("pages", root, pages.to_vec()));
        }
        fn flush_space(&self, root: Pfn) {
            self.0.lock().push(("space", root, Vec::new()));
        }
        fn flush_all(&self) {
            self.0.lock().push(("all", Pfn(0), Vec::new()));
        }
    }

    impl Log {
        fn take(&self) -> Vec<(&'static str, Pfn, Vec<FlushPage>)> {
            core::mem::take(&mut *self.0.lock())
        }
    }

    const ROOT: Pfn = Pfn(7);

    fn page(va: u64) -> FlushPage {
        FlushPage {
            va,
            size: PageSize::Size4K,
        }
    }

    #[test]
    fn tokens_flush_what_changed() {
        let log = Log::default();
        PageFlush::page(ROOT, 0x5000, PageSize::Size4K).flush(&log);
        PageFlush::space(ROOT).flush(&log);
        PageFlush::nothing(ROOT).flush(&log);
        assert_eq!(
            log.take(),
            [
                ("pages", ROOT, Vec::from([page(0x5000)])),
                ("space", ROOT, Vec::new())
            ]
        );
        PageFlush::page(ROOT, 0x5000, PageSize::Size4K).ignore_fresh_table();
        assert!(!PageFlush::nothing(ROOT).is_needed());
        assert_eq!(log.take(), []);
    }

    #[test]
    fn merged_tokens_widen_only_as_needed() {
        let page = |va| PageFlush::page(ROOT, va, PageSize::Size4K);
        let merged = PageFlush::nothing(ROOT).merge(page(0x1000));
        assert_eq!(
            merged.page_to_flush(),
            Some(super::FlushPage {
                va: 0x1000,
                size: PageSize::Size4K
            })
        );
        let merged = merged.merge(page(0x1000)).merge(PageFlush::nothing(ROOT));
        assert_eq!(merged.page_to_flush().map(|p| p.va), Some(0x1000));
        let merged = merged.merge(page(0x2000));
        assert!(merged.is_needed() && merged.page_to_flush().is_none());
        let log = Log::default();
        merged.flush(&log);
        assert_eq!(log.take(), [("space", ROOT, Vec::new())]);
        assert!(
            !PageFlush::nothing(ROOT)
                .merge(PageFlush::nothing(ROOT))
                .is_needed()
        );
    }

    #[test]
    #[should_panic(expected = "PageFlush of root 0x7 dropped without a flush")]
    fn a_dropped_token_panics() {
        let _ = PageFlush::page(ROOT, 0x5000, PageSize::Size4K);
    }

    #[test]
    fn a_token_that_needs_nothing_may_be_dropped() {
        drop(PageFlush::nothing(ROOT));
        drop(FlushBatch::new());
    }

    #[test]
    #[should_panic(expected = "FlushBatch of root 0x7 dropped without a flush")]
    fn a_dropped_batch_panics() {
        let mut batch = FlushBatch::new();
        batch.add(PageFlush::page(ROOT, 0x5000, PageSize::Size4K));
        drop(batch);
    }

    #[test]
    fn a_batch_flushes_its_pages_in_one_call() {
        let log = Log::default();
        let mut batch = FlushBatch::new();
        batch.add(PageFlush::nothing(Pfn(99)));
        assert!(batch.is_empty());
        for i in 0..BATCH_PAGES as u64 {
            batch.add(PageFlush::page(ROOT, i << 12, PageSize::Size4K));
        }
        assert_eq!(batch.pages().len(), BATCH_PAGES);
        batch.flush(&log);
        let want: Vec<FlushPage> = (0..BATCH_PAGES as u64).map(|i| page(i << 12)).collect();
        assert_eq!(log.take(), [("pages", ROOT, want)]);
        // An empty batch costs no call at all.
        FlushBatch::new().flush(&log);
        assert_eq!(log.take(), []);
    }

    #[test]
    fn a_batch_grows_into_wider_flushes() {
        let log = Log::default();
        let mut batch = FlushBatch::new();
        for i in 0..=BATCH_PAGES as u64 {
            batch.add(PageFlush::page(ROOT, i << 12, PageSize::Size4K));
        }
        assert_eq!(batch.pages(), []);
        batch.flush(&log);
        assert_eq!(log.take(), [("space", ROOT, Vec::new())]);
        let mut batch = FlushBatch::new();
        batch.add(PageFlush::page(ROOT, 0x1000, PageSize::Size2M));
        batch.add(PageFlush::space(ROOT));
        batch.flush(&log);
        assert_eq!(log.take(), [("space", ROOT, Vec::new())]);
        let mut batch = FlushBatch::new();
        batch.add(PageFlush::page(ROOT, 0x1000, PageSize::Size4K));
        batch.add(PageFlush::page(Pfn(8), 0x1000, PageSize::Size4K));
        batch.flush(&log);
        assert_eq!(log.take(), [("all", Pfn(0), Vec::new())]);
    }

    #[test]
    fn batches_append() {
        let log = Log::default();
        let mut a = FlushBatch::new();
        a.add(PageFlush::page(ROOT, 0x1000, PageSize::Size4K));
        let mut b = FlushBatch::new();
        b.add(PageFlush::page(ROOT, 0x2000, PageSize::Size4K));
        a.append(b);
        a.append(FlushBatch::new());
        assert_eq!(a.pages(), [page(0x1000), page(0x2000)]);
        let mut c = FlushBatch::new();
        c.add(PageFlush::space(ROOT));
        a.append(c);
        a.flush(&log);
        assert_eq!(log.take(), [("space", ROOT, Vec::new())]);
    }
}
