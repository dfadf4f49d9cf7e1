//! A process's descriptor table: a fixed array, so opening a descriptor
//! never allocates and the lowest free number is found as POSIX requires.

/// Descriptors a process may hold open at once.
pub const MAX_FDS: usize = 64;

/// An open file: the console or one end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Console,
    PipeRead(u32),
    PipeWrite(u32),
}

pub struct FdTable {
    slots: [Option<File>; MAX_FDS],
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new()
    }
}

impl FdTable {
    pub const fn new() -> FdTable {
        FdTable {
            slots: [None; MAX_FDS],
        }
    }

    /// Installs `file` at the lowest free descriptor.
    pub fn open(&mut self, file: File) -> Option<u32> {
        let fd = self.slots.iter().position(Option::is_none)?;
        self.slots[fd] = Some(file);
        Some(fd as u32)
    }

    /// Installs `file` at `fd` exactly; false when it is taken or too big.
    pub fn open_at(&mut self, fd: u32, file: File) -> bool {
        match self.slots.get_mut(fd as usize) {
            Some(slot @ None) => {
                *slot = Some(file);
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, fd: u64) -> Option<File> {
        *self.slots.get(usize::try_from(fd).ok()?)?
    }

    /// Removes descriptor `fd`, handing back what it named.
    pub fn close(&mut self, fd: u64) -> Option<File> {
        self.slots.get_mut(usize::try_from(fd).ok()?)?.take()
    }

    /// Empties the table, for a process's end.
    pub fn drain(&mut self) -> impl Iterator<Item = File> + '_ {
        self.slots.iter_mut().filter_map(Option::take)
    }

    pub fn open_count(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_descriptor_first() {
        let mut t = FdTable::new();
        assert_eq!(t.open(File::Console), Some(0));
        assert!(t.open_at(2, File::Console));
        assert!(!t.open_at(2, File::PipeRead(1)));
        assert_eq!(t.open(File::PipeRead(1)), Some(1));
        assert_eq!(t.open(File::PipeWrite(1)), Some(3));
        assert_eq!(t.close(1), Some(File::PipeRead(1)));
        assert_eq!(t.close(1), None);
        assert_eq!(t.open(File::PipeWrite(2)), Some(1));
        assert_eq!(t.get(3), Some(File::PipeWrite(1)));
        assert_eq!(t.get(u64::MAX), None);
        assert_eq!(t.close(1 << 40), None);
        assert_eq!(t.open_count(), 4);
    }

    #[test]
    fn full_table_refuses() {
        let mut t = FdTable::new();
        for fd in 0..MAX_FDS as u32 {
            assert_eq!(t.open(File::Console), Some(fd));
        }
        assert_eq!(t.open(File::Console), None);
        assert!(!t.open_at(MAX_FDS as u32, File::Console));
        assert_eq!(t.drain().count(), MAX_FDS);
        assert_eq!(t.open_count(), 0);
    }
}
