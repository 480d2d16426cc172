package schemas_test

import (
	"errors"
	"fmt"

	"github.com/writ-dev/writ/schemas"
)

func ExampleValidate() {
	body := []byte(`{
	  "specversion": "1.0",
	  "id": "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b.approved",
	  "source": "writ://acme/approval",
	  "type": "writ.request.approved.v1",
	  "subject": "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b",
	  "time": "2025-03-14T09:26:53Z",
	  "datacontenttype": "application/json",
	  "data": {"prev": "", "approvers": []}
	}`)
	err := schemas.Validate("writ.request.approved.v1", body)
	fmt.Println(errors.Is(err, schemas.ErrInvalid))
	fmt.Println(err)

	err = schemas.Validate("writ.request.approved.v9", body)
	fmt.Println(errors.Is(err, schemas.ErrUnknownType))
	// Output:
	// true
	// schemas: invalid: /data/approvers: at '/data/approvers': minItems: got 0, want 1
	// true
}
