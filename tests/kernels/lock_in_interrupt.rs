//! Built to panic: the process table's lock, which only tasks may take,
//! taken inside an interrupt handler (a call IPI run on CPU 1). The
//! interrupt-context check must stop it, and the report name CPU 1; run.sh
//! expects it.
#![no_std]
#![no_main]

boot::entry!(main);

fn count_processes() {
    let n = boot::task::system().process_count();
    arch::println!("cpu 1 took the process table in an IPI handler: {n} processes");
}

fn main(_: &'static boot::Booted) -> ! {
    let Some(cpu1) = arch::percpu::cpu(1) else {
        panic!("lock_in_interrupt needs a second CPU");
    };
    // Allowed here, in the boot thread: the check tells the two apart.
    let n = boot::task::system().process_count();
    arch::println!("the boot thread took the process table: {n} processes");
    let r = arch::smp::call_on(cpu1, count_processes, 5_000_000);
    panic!("cpu 1 was not stopped by the check: {r:?}");
}
