# A minimal Ember guest for VMM regression tests: no libc, no C, ring 3 only
# (the VMM enters it at runtime_entry in 64-bit ring 3 with rdi = boot info).
# It drives the pre-configured virtio consoles by polling (no interrupts) and
# reports through the control page. The first byte of the boot command line
# picks what it does:
#   (empty)  write "hi\n" to stdout, exit 42
#   e        echo stdin to stdout until EOF (len-0 used buffer), exit 0
#   s        write "err\n" to stderr, exit 3
#   f        execute ud2: #UD -> ring-0 fault stub -> control page (SIGILL, 132)
#   g        exit by signal 6 (SIGABRT, 134)
#   l        write a log record "hello from the test kernel", exit 0
#   t        spin forever (timeout tests)
#   p        port I/O (outb): the VMM must fail cleanly (125)
#   k        write "x" to a bad descriptor address: the device breaks, exit 7
#   r        reset the vsock device and console 1 and bring each back to
#            DRIVER_OK (no queues), write "hi\n", reset console 0, exit 0: a
#            guest may reset a device at any time (the VMM must survive it
#            under its seccomp filters)
#include "testkernel_offsets.inc"   // generated from api/ by offsets.cc

        .text
        .globl runtime_entry
runtime_entry:
        lea stack_top(%rip), %rsp          # the VMM leaves rsp undefined
        movzbl CMDLINE(%rdi), %eax
        cmp $'e', %al ; je echo
        cmp $'s', %al ; je stderr_test
        cmp $'f', %al ; je fault_test
        cmp $'g', %al ; je signal_test
        cmp $'l', %al ; je log_test
        cmp $'t', %al ; je spin
        cmp $'p', %al ; je pio_test
        cmp $'k', %al ; je bad_desc_test
        cmp $'r', %al ; je reset_test
        lea hi(%rip), %rsi
        mov $3, %edx
        mov $TXQ, %rbx
        mov $NOTIFY0, %r8
        mov $1, %r9d
        call tx_send
        mov $42, %eax
        jmp exit_code

stderr_test:
        lea errmsg(%rip), %rsi
        mov $4, %edx
        mov $ERRTXQ, %rbx
        mov $NOTIFY1, %r8
        mov $1, %r9d
        call tx_send
        mov $3, %eax
        jmp exit_code

bad_desc_test:
        mov $0xfffffffffffff000, %rsi     # not guest memory
        mov $1, %edx
        mov $TXQ, %rbx
        mov $NOTIFY0, %r8
        mov $1, %r9d
        call tx_post                       # post, do not wait: the device breaks
        mov $1000000, %ecx
1:      pause
        dec %ecx
        jnz 1b
        mov $7, %eax
        jmp exit_code

reset_test:
        mov $VIRTIO_MMIO+2*VIRTIO_STRIDE, %rbx   # vsock
        call reinit_device
        mov $VIRTIO_MMIO+VIRTIO_STRIDE, %rbx     # console 1
        call reinit_device
        lea hi(%rip), %rsi
        mov $3, %edx
        mov $TXQ, %rbx
        mov $NOTIFY0, %r8
        mov $1, %r9d
        call tx_send
        mov $VIRTIO_MMIO, %rbx
        movl $0, MMIO_STATUS(%rbx)
        xor %eax, %eax
        jmp exit_code

# reinit_device: rbx = the device's register window. Reset, then what a
# driver does: VERSION_1, FEATURES_OK, DRIVER_OK; then reset again.
reinit_device:
        movl $0, MMIO_STATUS(%rbx)
        movl $1, MMIO_DRIVER_FEATURES_SEL(%rbx)
        movl $1, MMIO_DRIVER_FEATURES(%rbx)   # bit 32: VIRTIO_F_VERSION_1
        movl $0xb, MMIO_STATUS(%rbx)          # ACKNOWLEDGE | DRIVER | FEATURES_OK
        movl $0xf, MMIO_STATUS(%rbx)          # ... | DRIVER_OK
        movl $0, MMIO_STATUS(%rbx)
        ret

fault_test:
        ud2

signal_test:
        mov $CONTROL, %rax
        movl $6, CONTROL_EXIT_SIGNAL(%rax)
        jmp spin

log_test:
        mov $CONTROL, %rax
        lea logrec(%rip), %rcx
        movq %rcx, CONTROL_LOG(%rax)
        xor %eax, %eax
        jmp exit_code

pio_test:
        outb %al, $0x80
        jmp spin

spin:   pause
        jmp spin

exit_code:                             # eax = status
        mov $CONTROL, %rcx
        movl %eax, CONTROL_EXIT_CODE(%rcx)
        jmp spin

# tx_post: rsi = buffer, edx = length, rbx = queue base, r8 = notify address,
# r9d = queue index. Uses descriptor (avail idx % 256), publishes it, notifies.
tx_post:
        movzwl AVAIL+2(%rbx), %eax         # avail idx
        movzbl %al, %ecx                   # slot = idx % 256
        mov %rcx, %r10
        shl $4, %r10
        mov %rsi, (%rbx,%r10)              # desc.addr
        mov %edx, 8(%rbx,%r10)             # desc.len
        movl $0, 12(%rbx,%r10)             # flags = 0, next = 0
        movw %cx, AVAIL+4(%rbx,%rcx,2)     # avail.ring[slot] = slot
        movw $1, AVAIL(%rbx)               # VRING_AVAIL_F_NO_INTERRUPT
        inc %eax
        movw %ax, AVAIL+2(%rbx)            # publish (x86 stores are ordered)
        movl %r9d, (%r8)                   # QueueNotify (ioeventfd)
        ret

# tx_send: tx_post, then spin until the device has used it.
tx_send:
        call tx_post
        mov %eax, %r11d                    # the avail idx we published
1:      movzwl USED+2(%rbx), %ecx          # used idx
        cmp %r11w, %cx
        je 2f
        pause
        jmp 1b
2:      ret

# echo: post one 4 KiB receive buffer at a time, wait for it, send what came.
echo:
        movw $1, RXQ+AVAIL                 # no interrupts: we poll
        xor %r12d, %r12d                   # receive buffers posted
1:      movzbl %r12b, %ecx                 # slot
        mov %rcx, %r10
        shl $4, %r10
        lea rxbuf(%rip), %rax
        mov %rax, RXQ(%r10)
        movl $4096, RXQ+8(%r10)
        movl $2, RXQ+12(%r10)              # VIRTQ_DESC_F_WRITE
        movw %cx, RXQ+AVAIL+4(,%rcx,2)
        inc %r12d
        movw %r12w, RXQ+AVAIL+2
        mov $NOTIFY0, %rax
        movl $0, (%rax)                    # notify receiveq
2:      movzwl RXQ+USED+2, %eax            # used idx
        cmp %r12w, %ax
        je 3f
        pause
        jmp 2b
3:      lea -1(%r12), %ecx
        movzbl %cl, %ecx
        mov RXQ+USED+4+4(,%rcx,8), %edx    # used.ring[slot].len
        test %edx, %edx
        jz 4f                              # len 0: EOF
        lea rxbuf(%rip), %rsi
        mov $TXQ, %rbx
        mov $NOTIFY0, %r8
        mov $1, %r9d
        call tx_send
        jmp 1b
4:      xor %eax, %eax
        jmp exit_code

# Ring 0: every exception vector reports itself on the control page.
        .align 32
fault_stubs:
        .set vec, 0
        .rept 32
        .align 32
        push %rax
        movabs $CONTROL+CONTROL_FAULT, %rax
        movl $vec, (%rax)
        hlt
        .set vec, vec+1
        .endr

wait_gate:
irq_handler:
        push %rax
        mov $LAPIC_EOI, %eax               # xAPIC EOI (zero-extended)
        movl $0, (%rax)
        pop %rax
        iretq

        .section .rodata
hi:     .ascii "hi\n"
errmsg: .ascii "err\n"
        .align 8
fault_table:
        .set vec, 0
        .rept 32
        .quad fault_stubs + 32 * vec
        .set vec, vec+1
        .endr
        .align 8
logrec: .long 26, 1
        .ascii "hello from the test kernel"

        .section .note.ember, "a"
        .align 4
        .long 6                            # namesz ("Ember\0")
        .long 48                           # descsz (GuestNote)
        .long NOTE_TYPE
        .asciz "Ember"
        .align 4
        .long ABI_VERSION
        .long 0
        .quad runtime_entry
        .quad spin                         # syscall_entry (unused)
        .quad wait_gate
        .quad irq_handler
        .quad fault_table

        .bss
        .align 4096
rxbuf:  .skip 4096
        .skip 4096
stack_top:
