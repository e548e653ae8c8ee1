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
        .set CONTROL, 0xd0000000
        .set NOTIFY0, 0xd0001050          # console 0 QueueNotify
        .set NOTIFY1, 0xd0002050          # console 1 QueueNotify
        .set RXQ, 0x10000                 # queue_gpa(0, 0): console 0 receiveq
        .set TXQ, 0x13000                 # queue_gpa(0, 1): console 0 transmitq
        .set ERRTXQ, 0x1f000              # queue_gpa(1, 1): console 1 transmitq
        .set CMDLINE, 376                 # offsetof(BootInfo, cmdline)

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

fault_test:
        ud2

signal_test:
        mov $CONTROL, %rax
        movl $6, 8(%rax)
        jmp spin

log_test:
        mov $CONTROL, %rax
        lea logrec(%rip), %rcx
        movq %rcx, 0x10(%rax)
        xor %eax, %eax
        jmp exit_code

pio_test:
        outb %al, $0x80
        jmp spin

spin:   pause
        jmp spin

exit_code:                             # eax = status
        mov $CONTROL, %rcx
        movl %eax, 4(%rcx)
        jmp spin

# tx_post: rsi = buffer, edx = length, rbx = queue base, r8 = notify address,
# r9d = queue index. Uses descriptor (avail idx % 256), publishes it, notifies.
tx_post:
        movzwl 0x1002(%rbx), %eax          # avail idx
        movzbl %al, %ecx                   # slot = idx % 256
        mov %rcx, %r10
        shl $4, %r10
        mov %rsi, (%rbx,%r10)              # desc.addr
        mov %edx, 8(%rbx,%r10)             # desc.len
        movl $0, 12(%rbx,%r10)             # flags = 0, next = 0
        movw %cx, 0x1004(%rbx,%rcx,2)      # avail.ring[slot] = slot
        movw $1, 0x1000(%rbx)              # VRING_AVAIL_F_NO_INTERRUPT
        inc %eax
        movw %ax, 0x1002(%rbx)             # publish (x86 stores are ordered)
        movl %r9d, (%r8)                   # QueueNotify (ioeventfd)
        ret

# tx_send: tx_post, then spin until the device has used it.
tx_send:
        call tx_post
        mov %eax, %r11d                    # the avail idx we published
1:      movzwl 0x2002(%rbx), %ecx          # used idx
        cmp %r11w, %cx
        je 2f
        pause
        jmp 1b
2:      ret

# echo: post one 4 KiB receive buffer at a time, wait for it, send what came.
echo:
        movw $1, RXQ+0x1000                # no interrupts: we poll
        xor %r12d, %r12d                   # receive buffers posted
1:      movzbl %r12b, %ecx                 # slot
        mov %rcx, %r10
        shl $4, %r10
        lea rxbuf(%rip), %rax
        mov %rax, RXQ(%r10)
        movl $4096, RXQ+8(%r10)
        movl $2, RXQ+12(%r10)              # VIRTQ_DESC_F_WRITE
        movw %cx, RXQ+0x1004(,%rcx,2)
        inc %r12d
        movw %r12w, RXQ+0x1002
        mov $NOTIFY0, %rax
        movl $0, (%rax)                    # notify receiveq
2:      movzwl RXQ+0x2002, %eax            # used idx
        cmp %r12w, %ax
        je 3f
        pause
        jmp 2b
3:      lea -1(%r12), %ecx
        movzbl %cl, %ecx
        mov RXQ+0x2004+4(,%rcx,8), %edx    # used.ring[slot].len
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
        movabs $CONTROL+0x0c, %rax
        movl $vec, (%rax)
        hlt
        .set vec, vec+1
        .endr

wait_gate:
irq_handler:
        push %rax
        mov $0xfee000b0, %eax              # xAPIC EOI (zero-extended: 0xfee000b0)
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
        .long 0x454d4231                   # kGuestNoteType
        .asciz "Ember"
        .align 4
        .long 1                            # abi_version
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
