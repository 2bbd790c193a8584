//go:build linux

package ring_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	. "github.com/pipes-go/pipes/ring"
)

// abiConstants maps every exported constant of abi_linux.go to its value;
// TestABIConstantsComplete keeps it complete, TestABIAgainstHeader checks
// it against the kernel's header.
var abiConstants = map[string]int64{
	"IORING_OP_NOP":                    int64(IORING_OP_NOP),
	"IORING_OP_READV":                  int64(IORING_OP_READV),
	"IORING_OP_WRITEV":                 int64(IORING_OP_WRITEV),
	"IORING_OP_FSYNC":                  int64(IORING_OP_FSYNC),
	"IORING_OP_READ_FIXED":             int64(IORING_OP_READ_FIXED),
	"IORING_OP_WRITE_FIXED":            int64(IORING_OP_WRITE_FIXED),
	"IORING_OP_POLL_ADD":               int64(IORING_OP_POLL_ADD),
	"IORING_OP_POLL_REMOVE":            int64(IORING_OP_POLL_REMOVE),
	"IORING_OP_SYNC_FILE_RANGE":        int64(IORING_OP_SYNC_FILE_RANGE),
	"IORING_OP_SENDMSG":                int64(IORING_OP_SENDMSG),
	"IORING_OP_RECVMSG":                int64(IORING_OP_RECVMSG),
	"IORING_OP_TIMEOUT":                int64(IORING_OP_TIMEOUT),
	"IORING_OP_TIMEOUT_REMOVE":         int64(IORING_OP_TIMEOUT_REMOVE),
	"IORING_OP_ACCEPT":                 int64(IORING_OP_ACCEPT),
	"IORING_OP_ASYNC_CANCEL":           int64(IORING_OP_ASYNC_CANCEL),
	"IORING_OP_LINK_TIMEOUT":           int64(IORING_OP_LINK_TIMEOUT),
	"IORING_OP_CONNECT":                int64(IORING_OP_CONNECT),
	"IORING_OP_FALLOCATE":              int64(IORING_OP_FALLOCATE),
	"IORING_OP_OPENAT":                 int64(IORING_OP_OPENAT),
	"IORING_OP_CLOSE":                  int64(IORING_OP_CLOSE),
	"IORING_OP_FILES_UPDATE":           int64(IORING_OP_FILES_UPDATE),
	"IORING_OP_STATX":                  int64(IORING_OP_STATX),
	"IORING_OP_READ":                   int64(IORING_OP_READ),
	"IORING_OP_WRITE":                  int64(IORING_OP_WRITE),
	"IORING_OP_FADVISE":                int64(IORING_OP_FADVISE),
	"IORING_OP_MADVISE":                int64(IORING_OP_MADVISE),
	"IORING_OP_SEND":                   int64(IORING_OP_SEND),
	"IORING_OP_RECV":                   int64(IORING_OP_RECV),
	"IORING_OP_OPENAT2":                int64(IORING_OP_OPENAT2),
	"IORING_OP_EPOLL_CTL":              int64(IORING_OP_EPOLL_CTL),
	"IORING_OP_SPLICE":                 int64(IORING_OP_SPLICE),
	"IORING_OP_PROVIDE_BUFFERS":        int64(IORING_OP_PROVIDE_BUFFERS),
	"IORING_OP_REMOVE_BUFFERS":         int64(IORING_OP_REMOVE_BUFFERS),
	"IORING_OP_TEE":                    int64(IORING_OP_TEE),
	"IORING_OP_SHUTDOWN":               int64(IORING_OP_SHUTDOWN),
	"IORING_OP_RENAMEAT":               int64(IORING_OP_RENAMEAT),
	"IORING_OP_UNLINKAT":               int64(IORING_OP_UNLINKAT),
	"IORING_OP_MKDIRAT":                int64(IORING_OP_MKDIRAT),
	"IORING_OP_SYMLINKAT":              int64(IORING_OP_SYMLINKAT),
	"IORING_OP_LINKAT":                 int64(IORING_OP_LINKAT),
	"IORING_OP_MSG_RING":               int64(IORING_OP_MSG_RING),
	"IORING_OP_FSETXATTR":              int64(IORING_OP_FSETXATTR),
	"IORING_OP_SETXATTR":               int64(IORING_OP_SETXATTR),
	"IORING_OP_FGETXATTR":              int64(IORING_OP_FGETXATTR),
	"IORING_OP_GETXATTR":               int64(IORING_OP_GETXATTR),
	"IORING_OP_SOCKET":                 int64(IORING_OP_SOCKET),
	"IORING_OP_URING_CMD":              int64(IORING_OP_URING_CMD),
	"IORING_OP_SEND_ZC":                int64(IORING_OP_SEND_ZC),
	"IORING_OP_SENDMSG_ZC":             int64(IORING_OP_SENDMSG_ZC),
	"IOSQE_FIXED_FILE":                 int64(IOSQE_FIXED_FILE),
	"IOSQE_IO_DRAIN":                   int64(IOSQE_IO_DRAIN),
	"IOSQE_IO_LINK":                    int64(IOSQE_IO_LINK),
	"IOSQE_IO_HARDLINK":                int64(IOSQE_IO_HARDLINK),
	"IOSQE_ASYNC":                      int64(IOSQE_ASYNC),
	"IOSQE_BUFFER_SELECT":              int64(IOSQE_BUFFER_SELECT),
	"IOSQE_CQE_SKIP_SUCCESS":           int64(IOSQE_CQE_SKIP_SUCCESS),
	"IORING_SETUP_IOPOLL":              int64(IORING_SETUP_IOPOLL),
	"IORING_SETUP_SQPOLL":              int64(IORING_SETUP_SQPOLL),
	"IORING_SETUP_SQ_AFF":              int64(IORING_SETUP_SQ_AFF),
	"IORING_SETUP_CQSIZE":              int64(IORING_SETUP_CQSIZE),
	"IORING_SETUP_CLAMP":               int64(IORING_SETUP_CLAMP),
	"IORING_SETUP_ATTACH_WQ":           int64(IORING_SETUP_ATTACH_WQ),
	"IORING_SETUP_R_DISABLED":          int64(IORING_SETUP_R_DISABLED),
	"IORING_SETUP_SUBMIT_ALL":          int64(IORING_SETUP_SUBMIT_ALL),
	"IORING_SETUP_COOP_TASKRUN":        int64(IORING_SETUP_COOP_TASKRUN),
	"IORING_SETUP_TASKRUN_FLAG":        int64(IORING_SETUP_TASKRUN_FLAG),
	"IORING_SETUP_SQE128":              int64(IORING_SETUP_SQE128),
	"IORING_SETUP_CQE32":               int64(IORING_SETUP_CQE32),
	"IORING_SETUP_SINGLE_ISSUER":       int64(IORING_SETUP_SINGLE_ISSUER),
	"IORING_SETUP_DEFER_TASKRUN":       int64(IORING_SETUP_DEFER_TASKRUN),
	"IORING_SETUP_NO_MMAP":             int64(IORING_SETUP_NO_MMAP),
	"IORING_SETUP_REGISTERED_FD_ONLY":  int64(IORING_SETUP_REGISTERED_FD_ONLY),
	"IORING_SETUP_NO_SQARRAY":          int64(IORING_SETUP_NO_SQARRAY),
	"IORING_FEAT_SINGLE_MMAP":          int64(IORING_FEAT_SINGLE_MMAP),
	"IORING_FEAT_NODROP":               int64(IORING_FEAT_NODROP),
	"IORING_FEAT_SUBMIT_STABLE":        int64(IORING_FEAT_SUBMIT_STABLE),
	"IORING_FEAT_RW_CUR_POS":           int64(IORING_FEAT_RW_CUR_POS),
	"IORING_FEAT_CUR_PERSONALITY":      int64(IORING_FEAT_CUR_PERSONALITY),
	"IORING_FEAT_FAST_POLL":            int64(IORING_FEAT_FAST_POLL),
	"IORING_FEAT_POLL_32BITS":          int64(IORING_FEAT_POLL_32BITS),
	"IORING_FEAT_SQPOLL_NONFIXED":      int64(IORING_FEAT_SQPOLL_NONFIXED),
	"IORING_FEAT_EXT_ARG":              int64(IORING_FEAT_EXT_ARG),
	"IORING_FEAT_NATIVE_WORKERS":       int64(IORING_FEAT_NATIVE_WORKERS),
	"IORING_FEAT_RSRC_TAGS":            int64(IORING_FEAT_RSRC_TAGS),
	"IORING_FEAT_CQE_SKIP":             int64(IORING_FEAT_CQE_SKIP),
	"IORING_FEAT_LINKED_FILE":          int64(IORING_FEAT_LINKED_FILE),
	"IORING_FEAT_REG_REG_RING":         int64(IORING_FEAT_REG_REG_RING),
	"IORING_ENTER_GETEVENTS":           int64(IORING_ENTER_GETEVENTS),
	"IORING_ENTER_SQ_WAKEUP":           int64(IORING_ENTER_SQ_WAKEUP),
	"IORING_ENTER_SQ_WAIT":             int64(IORING_ENTER_SQ_WAIT),
	"IORING_ENTER_EXT_ARG":             int64(IORING_ENTER_EXT_ARG),
	"IORING_ENTER_REGISTERED_RING":     int64(IORING_ENTER_REGISTERED_RING),
	"IORING_SQ_NEED_WAKEUP":            int64(IORING_SQ_NEED_WAKEUP),
	"IORING_SQ_CQ_OVERFLOW":            int64(IORING_SQ_CQ_OVERFLOW),
	"IORING_SQ_TASKRUN":                int64(IORING_SQ_TASKRUN),
	"IORING_CQ_EVENTFD_DISABLED":       int64(IORING_CQ_EVENTFD_DISABLED),
	"IORING_CQE_F_BUFFER":              int64(IORING_CQE_F_BUFFER),
	"IORING_CQE_F_MORE":                int64(IORING_CQE_F_MORE),
	"IORING_CQE_F_SOCK_NONEMPTY":       int64(IORING_CQE_F_SOCK_NONEMPTY),
	"IORING_CQE_F_NOTIF":               int64(IORING_CQE_F_NOTIF),
	"IORING_CQE_BUFFER_SHIFT":          int64(IORING_CQE_BUFFER_SHIFT),
	"IORING_OFF_SQ_RING":               int64(IORING_OFF_SQ_RING),
	"IORING_OFF_CQ_RING":               int64(IORING_OFF_CQ_RING),
	"IORING_OFF_SQES":                  int64(IORING_OFF_SQES),
	"IORING_TIMEOUT_ABS":               int64(IORING_TIMEOUT_ABS),
	"IORING_TIMEOUT_UPDATE":            int64(IORING_TIMEOUT_UPDATE),
	"IORING_TIMEOUT_BOOTTIME":          int64(IORING_TIMEOUT_BOOTTIME),
	"IORING_TIMEOUT_REALTIME":          int64(IORING_TIMEOUT_REALTIME),
	"IORING_LINK_TIMEOUT_UPDATE":       int64(IORING_LINK_TIMEOUT_UPDATE),
	"IORING_TIMEOUT_ETIME_SUCCESS":     int64(IORING_TIMEOUT_ETIME_SUCCESS),
	"IORING_POLL_ADD_MULTI":            int64(IORING_POLL_ADD_MULTI),
	"IORING_POLL_UPDATE_EVENTS":        int64(IORING_POLL_UPDATE_EVENTS),
	"IORING_POLL_UPDATE_USER_DATA":     int64(IORING_POLL_UPDATE_USER_DATA),
	"IORING_POLL_ADD_LEVEL":            int64(IORING_POLL_ADD_LEVEL),
	"IORING_ASYNC_CANCEL_ALL":          int64(IORING_ASYNC_CANCEL_ALL),
	"IORING_ASYNC_CANCEL_FD":           int64(IORING_ASYNC_CANCEL_FD),
	"IORING_ASYNC_CANCEL_ANY":          int64(IORING_ASYNC_CANCEL_ANY),
	"IORING_ASYNC_CANCEL_FD_FIXED":     int64(IORING_ASYNC_CANCEL_FD_FIXED),
	"IORING_ASYNC_CANCEL_USERDATA":     int64(IORING_ASYNC_CANCEL_USERDATA),
	"IORING_ASYNC_CANCEL_OP":           int64(IORING_ASYNC_CANCEL_OP),
	"IORING_REGISTER_BUFFERS":          int64(IORING_REGISTER_BUFFERS),
	"IORING_UNREGISTER_BUFFERS":        int64(IORING_UNREGISTER_BUFFERS),
	"IORING_REGISTER_FILES":            int64(IORING_REGISTER_FILES),
	"IORING_UNREGISTER_FILES":          int64(IORING_UNREGISTER_FILES),
	"IORING_REGISTER_EVENTFD":          int64(IORING_REGISTER_EVENTFD),
	"IORING_UNREGISTER_EVENTFD":        int64(IORING_UNREGISTER_EVENTFD),
	"IORING_REGISTER_FILES_UPDATE":     int64(IORING_REGISTER_FILES_UPDATE),
	"IORING_REGISTER_EVENTFD_ASYNC":    int64(IORING_REGISTER_EVENTFD_ASYNC),
	"IORING_REGISTER_PROBE":            int64(IORING_REGISTER_PROBE),
	"IORING_REGISTER_PERSONALITY":      int64(IORING_REGISTER_PERSONALITY),
	"IORING_UNREGISTER_PERSONALITY":    int64(IORING_UNREGISTER_PERSONALITY),
	"IORING_REGISTER_RESTRICTIONS":     int64(IORING_REGISTER_RESTRICTIONS),
	"IORING_REGISTER_ENABLE_RINGS":     int64(IORING_REGISTER_ENABLE_RINGS),
	"IORING_REGISTER_FILES2":           int64(IORING_REGISTER_FILES2),
	"IORING_REGISTER_FILES_UPDATE2":    int64(IORING_REGISTER_FILES_UPDATE2),
	"IORING_REGISTER_BUFFERS2":         int64(IORING_REGISTER_BUFFERS2),
	"IORING_REGISTER_BUFFERS_UPDATE":   int64(IORING_REGISTER_BUFFERS_UPDATE),
	"IORING_REGISTER_IOWQ_AFF":         int64(IORING_REGISTER_IOWQ_AFF),
	"IORING_UNREGISTER_IOWQ_AFF":       int64(IORING_UNREGISTER_IOWQ_AFF),
	"IORING_REGISTER_IOWQ_MAX_WORKERS": int64(IORING_REGISTER_IOWQ_MAX_WORKERS),
	"IORING_REGISTER_RING_FDS":         int64(IORING_REGISTER_RING_FDS),
	"IORING_UNREGISTER_RING_FDS":       int64(IORING_UNREGISTER_RING_FDS),
	"IORING_REGISTER_PBUF_RING":        int64(IORING_REGISTER_PBUF_RING),
	"IORING_UNREGISTER_PBUF_RING":      int64(IORING_UNREGISTER_PBUF_RING),
	"IORING_REGISTER_SYNC_CANCEL":      int64(IORING_REGISTER_SYNC_CANCEL),
	"IORING_REGISTER_FILE_ALLOC_RANGE": int64(IORING_REGISTER_FILE_ALLOC_RANGE),
	"IO_WQ_BOUND":                      int64(IO_WQ_BOUND),
	"IO_WQ_UNBOUND":                    int64(IO_WQ_UNBOUND),
	"SPLICE_F_FD_IN_FIXED":             int64(SPLICE_F_FD_IN_FIXED),
	"IORING_FILE_INDEX_ALLOC":          int64(IORING_FILE_INDEX_ALLOC),
	"IO_URING_OP_SUPPORTED":            int64(IO_URING_OP_SUPPORTED),
	"IORING_RSRC_REGISTER_SPARSE":      int64(IORING_RSRC_REGISTER_SPARSE),
	"IORING_REGISTER_FILES_SKIP":       int64(IORING_REGISTER_FILES_SKIP),
}

// layout is one struct's size and field offsets, as the kernel's uapi
// header defines them (checked with offsetof on linux/io_uring.h).
type layout struct {
	cName  string // C type
	goType any
	size   uintptr
	fields []fieldLayout
}

type fieldLayout struct {
	cField  string
	goField string
	offset  uintptr
}

var abiLayouts = []layout{
	{"struct io_uring_sqe", SQE{}, 64, []fieldLayout{
		{"opcode", "Opcode", 0}, {"flags", "Flags", 1}, {"ioprio", "Ioprio", 2}, {"fd", "Fd", 4},
		{"off", "Off", 8}, {"addr", "Addr", 16}, {"len", "Len", 24}, {"rw_flags", "OpFlags", 28},
		{"splice_flags", "OpFlags", 28}, {"cancel_flags", "OpFlags", 28}, {"timeout_flags", "OpFlags", 28},
		{"poll32_events", "OpFlags", 28}, {"user_data", "UserData", 32}, {"buf_index", "BufIndex", 40},
		{"personality", "Personality", 42}, {"splice_fd_in", "SpliceFdIn", 44}, {"file_index", "SpliceFdIn", 44},
		{"addr3", "Addr3", 48},
	}},
	{"struct io_uring_cqe", CQE{}, 16, []fieldLayout{
		{"user_data", "UserData", 0}, {"res", "Res", 8}, {"flags", "Flags", 12},
	}},
	{"struct io_sqring_offsets", SQRingOffsets{}, 40, []fieldLayout{
		{"head", "Head", 0}, {"tail", "Tail", 4}, {"ring_mask", "RingMask", 8}, {"ring_entries", "RingEntries", 12},
		{"flags", "Flags", 16}, {"dropped", "Dropped", 20}, {"array", "Array", 24}, {"resv1", "Resv1", 28},
		{"resv2", "UserAddr", 32},
	}},
	{"struct io_cqring_offsets", CQRingOffsets{}, 40, []fieldLayout{
		{"head", "Head", 0}, {"tail", "Tail", 4}, {"ring_mask", "RingMask", 8}, {"ring_entries", "RingEntries", 12},
		{"overflow", "Overflow", 16}, {"cqes", "Cqes", 20}, {"flags", "Flags", 24}, {"resv1", "Resv1", 28},
		{"resv2", "UserAddr", 32},
	}},
	{"struct io_uring_params", Params{}, 120, []fieldLayout{
		{"sq_entries", "SQEntries", 0}, {"cq_entries", "CQEntries", 4}, {"flags", "Flags", 8},
		{"sq_thread_cpu", "SQThreadCPU", 12}, {"sq_thread_idle", "SQThreadIdle", 16}, {"features", "Features", 20},
		{"wq_fd", "WQFd", 24}, {"resv", "Resv", 28}, {"sq_off", "SQOff", 40}, {"cq_off", "CQOff", 80},
	}},
	{"struct __kernel_timespec", KernelTimespec{}, 16, []fieldLayout{
		{"tv_sec", "Sec", 0}, {"tv_nsec", "Nsec", 8},
	}},
	{"struct io_uring_probe_op", ProbeOp{}, 8, []fieldLayout{
		{"op", "Op", 0}, {"resv", "Resv", 1}, {"flags", "Flags", 2}, {"resv2", "Resv2", 4},
	}},
	{"struct io_uring_probe", ProbeHeader{}, 16, []fieldLayout{
		{"last_op", "LastOp", 0}, {"ops_len", "OpsLen", 1}, {"resv", "Resv", 2}, {"resv2", "Resv2", 4},
	}},
	{"struct io_uring_rsrc_register", RsrcRegister{}, 32, []fieldLayout{
		{"nr", "Nr", 0}, {"flags", "Flags", 4}, {"resv2", "Resv2", 8}, {"data", "Data", 16}, {"tags", "Tags", 24},
	}},
	{"struct io_uring_rsrc_update", RsrcUpdate{}, 16, []fieldLayout{
		{"offset", "Offset", 0}, {"resv", "Resv", 4}, {"data", "Data", 8},
	}},
}

// TestABILayout checks sizes and offsets against the kernel's values.
func TestABILayout(t *testing.T) {
	for _, l := range abiLayouts {
		t.Run(l.cName, func(t *testing.T) {
			typ := reflect.TypeOf(l.goType)
			if typ.Size() != l.size {
				t.Errorf("sizeof %s = %d, kernel %d", typ, typ.Size(), l.size)
			}
			for _, f := range l.fields {
				sf, ok := typ.FieldByName(f.goField)
				if !ok {
					t.Fatalf("%s has no field %s", typ, f.goField)
				}
				if sf.Offset != f.offset {
					t.Errorf("offsetof %s.%s = %d, kernel %s.%s at %d", typ, f.goField, sf.Offset, l.cName, f.cField, f.offset)
				}
			}
		})
	}
	// The probe's op array starts right after its 16-byte header, and the
	// IOWQ max-workers argument is two uint32s.
	var p Probe
	if got := unsafe.Sizeof(p); got != 16+256*8 {
		t.Errorf("sizeof Probe = %d, want %d", got, 16+256*8)
	}
}

// TestABIConstantsComplete keeps abiConstants listing every exported
// constant of abi_linux.go.
func TestABIConstantsComplete(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "abi_linux.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if n.IsExported() {
					if _, ok := abiConstants[n.Name]; !ok {
						t.Errorf("constant %s is missing from abiConstants", n.Name)
					}
				}
			}
		}
	}
}

// TestABIAgainstHeader compiles a C program against the installed
// linux/io_uring.h and compares every constant the header defines and every
// layout above with what the C compiler says. Constants newer than the
// installed header are listed in the log.
func TestABIAgainstHeader(t *testing.T) {
	const header = "/usr/include/linux/io_uring.h"
	hdr, err := os.ReadFile(header)
	if err != nil {
		t.Skipf("no kernel uapi header (%v): the layout table of TestABILayout still applies", err)
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skipf("no gcc (%v): the layout table of TestABILayout still applies", err)
	}
	var src bytes.Buffer
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <linux/io_uring.h>\nint main(void) {\n")
	var missing []string
	for name := range abiConstants {
		if !bytes.Contains(hdr, []byte(name)) {
			missing = append(missing, name)
			continue
		}
		fmt.Fprintf(&src, "\tprintf(\"%s %%lld\\n\", (long long)(%s));\n", name, name)
	}
	for _, l := range abiLayouts {
		fmt.Fprintf(&src, "\tprintf(\"sizeof(%s) %%lld\\n\", (long long)sizeof(%s));\n", l.cName, l.cName)
		for _, f := range l.fields {
			fmt.Fprintf(&src, "\tprintf(\"offsetof(%s,%s) %%lld\\n\", (long long)offsetof(%s, %s));\n", l.cName, f.cField, l.cName, f.cField)
		}
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "abi.c"), src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-o", filepath.Join(dir, "abi"), filepath.Join(dir, "abi.c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "abi")).Output()
	if err != nil {
		t.Fatal(err)
	}
	kernel := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseInt(line[i+1:], 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		kernel[line[:i]] = v
	}
	checked := 0
	for name, v := range abiConstants {
		if kv, ok := kernel[name]; ok {
			checked++
			if kv != v {
				t.Errorf("%s = %d, header %d", name, v, kv)
			}
		}
	}
	for _, l := range abiLayouts {
		if kv := kernel["sizeof("+l.cName+")"]; uintptr(kv) != l.size {
			t.Errorf("sizeof(%s): table %d, header %d", l.cName, l.size, kv)
		}
		for _, f := range l.fields {
			if kv := kernel["offsetof("+l.cName+","+f.cField+")"]; uintptr(kv) != f.offset {
				t.Errorf("offsetof(%s, %s): table %d, header %d", l.cName, f.cField, f.offset, kv)
			}
		}
	}
	t.Logf("%d constants checked against %s; newer than the header (checked by behaviour tests only): %v", checked, header, missing)
}
