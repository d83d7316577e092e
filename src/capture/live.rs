//! Lab 4: `socklab capture`, live capture on an interface (work in progress).
